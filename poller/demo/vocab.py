"""Words and names the sample data is made of: several scripts and languages, so the demo
and the tests see real unicode (Cyrillic, accented Latin, CJK, Hangul, emoji)."""

RU_M = ("Иван", "Алексей", "Дмитрий", "Сергей", "Михаил", "Артём", "Никита", "Юрий")
RU_F = ("Анна", "Мария", "Елена", "Ольга", "Татьяна", "Юлия", "Наталья", "Алёна")
RU_PATR = ("Иванов", "Петров", "Сергеев", "Алексеев", "Николаев", "Андреев")
RU_LAST = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Фёдоров")
LATIN = (  # first, last, gender, country, area, city, zip
    ("José", "García", "M", "Spain", "Andalucía", "Málaga", "29001"),
    ("Zoë", "Müller", "F", "Germany", "Bayern", "München", "80331"),
    ("François", "Lefèvre", "M", "France", "Bourgogne-Franche-Comté", "Besançon", "25000"),
    ("Łukasz", "Wąsik", "M", "Poland", "Małopolskie", "Kraków", "30-001"),
    ("Chloé", "Dubois", "F", "France", "Île-de-France", "Paris", "75004"),
    ("Björn", "Åström", "M", "Sweden", "Skåne", "Malmö", "211 20"),
    ("Inês", "Gonçalves", "F", "Portugal", "Lisboa", "Lisboa", "1100-148"),
)
CJK = (  # first, last, gender, country, area, city, zip
    ("伟", "王", "M", "China", "北京市", "北京", "100000"),
    ("娜", "李", "F", "China", "上海市", "上海", "200000"),
    ("花子", "田中", "F", "Japan", "東京都", "東京", "100-0001"),
    ("민준", "김", "M", "South Korea", "서울특별시", "서울", "04524"),
)
PHONE_CODES = {"Spain": 34, "Germany": 49, "France": 33, "Poland": 48, "Sweden": 46,
                "Portugal": 351, "China": 86, "Japan": 81, "South Korea": 82}  # fmt: skip
RU_PLACES = (("Московская обл.", "Москва", "101000"), ("Ленинградская обл.", "Санкт-Петербург",
              "190000"), ("Республика Татарстан", "Казань", "420111"))  # fmt: skip
CATEGORIES = (  # name, parent index
    ("Продукты", None), ("Молочные продукты", 0), ("Сыры", 1), ("Молоко и кефир", 1),
    ("Бакалея", 0), ("Крупы", 4), ("Чай и кофе", 4), ("Зелёный чай", 6),
    ("Фрукты и овощи", 0), ("Фрукты", 8), ("Овощи", 8), ("Напитки", None), ("Соки", 11),
    ("Вода", 11), ("Boissons gazeuses", 11), ("Дом и сад", None), ("Бытовая химия", 15),
    ("Посуда", 15), ("Товары для кухни", 17), ("Сад", 15),
)  # fmt: skip
PRODUCTS = (  # name, unit, price
    ("Молоко 3,2% 1 л", "pcs", "89.90"), ("Кефир 2,5% 900 г", "pcs", "74.50"),  # noqa: RUF001
    ("Сыр Российский (весовой)", "kg", "749.00"), ("Гречка 900 г", "pcs", "112.00"),  # noqa: RUF001
    ("Café moulu 250 g", "pcs", "389.99"), ("緑茶 煎茶 100g", "pcs", "455.00"),
    ("Яблоки Гала", "kg", "139.90"), ("Bananen", "kg", "119.00"), ("Огурцы", "kg", "189.50"),
    ("Сок яблочный 1 л", "pcs", "129.00"), ("Eau minérale 1,5 l", "pcs", "59.90"),
    ("Средство для посуды 500 мл", "pcs", "149.00"), ("Сковорода 28 см", "pcs", "1999.00"),
    ("Семена томатов «Бычье сердце»", "pcs", "35.00"), ("Limonade 0,33 l", "pcs", "79.00"),
)  # fmt: skip
LEAF_FOR_PRODUCT = (3, 3, 2, 5, 6, 7, 9, 9, 10, 12, 13, 16, 18, 19, 14)
BRANDS = ("Простоквашино", "Ферма «Заря»", "Nestlé", "Öko Hof", "Global Village", "Каждый день",
           "無印良品", "Bon Appétit", "Домик в деревне", "Señorita")  # fmt: skip
EVENTS = ("login", "purchase", "bonus_accrual", "coupon_issued", "profile_update", "push_open",
           "email_click")  # fmt: skip
COMMENTS = ("Клиент открыл push-уведомление", "Начислены бонусы за покупку", None, None,
             "Profil mis à jour via l'appli", "Купон выдан на кассе", "登录成功")  # fmt: skip
PAYLOAD_NOTES = ("Спасибо за покупку! 🎉", "Merci ! À bientôt 😊", "ありがとう 🙏", "ok")
CAMPAIGNS = ("Весенняя распродажа", "Soldes d'été", "Black Friday", "День рождения 🎂",
              "Neujahrsrabatt", None)  # fmt: skip
