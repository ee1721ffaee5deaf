package local.poller.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.ArrayList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/**
 * Supplies the one bean that apicurio-common-app-components-config-index's
 * deployment module (not published on Maven Central) would synthesise at build
 * time: the list of dynamically configurable properties, empty here.
 */
@ApplicationScoped
public class EmptyDynamicConfig {
    @Produces
    @ApplicationScoped
    DynamicConfigPropertyList dynamicConfigPropertyList() {
        return new DynamicConfigPropertyList(new ArrayList<>());
    }
}
