"""Issue 17: with the worker's tenant_secrets, a tenant references only its own secrets and its
child does not inherit the worker's environment."""

from __future__ import annotations

from poller.fleet.scoping import child_environment, foreign_references

DIR = "/run/secrets/poller/{tenant}"


def test_own_files_pass_foreign_files_and_env_do_not() -> None:
    raw = {
        "source": {"url": "postgresql://u:${file:/run/secrets/poller/acme/db}@h/db"},
        "kafka": {"options": {"sasl.password": "${file:/run/secrets/poller/acme/kafka}"}},
    }
    assert foreign_references(raw, "acme", DIR, []) == []
    bad = {
        "a": "${file:/run/secrets/poller/acme.eu/db}",  # a neighbour with a longer id
        "b": "${file:/run/secrets/poller/acme/../other/db}",  # climbing out
        "c": "${WORKER_SASL_PASSWORD}",  # the worker's own credential
        "d": ["${file:relative/db}"],
    }
    problems = foreign_references(bad, "acme", DIR, [])
    assert [p.split(":")[0] for p in problems] == ["a", "b", "c", "d[0]"], problems
    assert foreign_references({"x": "${TZ_NAME}"}, "acme", DIR, ["TZ_NAME"]) == []


def test_tenant_ids_that_are_not_one_path_component_are_refused() -> None:
    for tenant in ("../acme", "a/b", ".."):
        assert foreign_references({}, tenant, DIR, []), tenant


def test_a_child_gets_a_filtered_environment() -> None:
    env = {"PATH": "/bin", "LC_ALL": "C", "WORKER_SASL_PASSWORD": "x", "OTHER_TENANT_PW": "y",
           "ALLOWED": "z"}  # fmt: skip
    out = child_environment(env, ["ALLOWED"], {"POLLER_PARENT": "1"})
    assert out == {"PATH": "/bin", "LC_ALL": "C", "ALLOWED": "z", "POLLER_PARENT": "1"}
