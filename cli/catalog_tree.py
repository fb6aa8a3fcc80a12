"""The marketplace's category tree and, for each leaf, the kind of goods on its shelf: what they
are called in Russian and English, who makes them, what they cost and which attributes they have.
`kassa seed` loads the tree; the catalog generator (cli/generator.py) fills the leaves."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CategoryNode:
    slug: str
    name: str  # Russian
    name_en: str
    parent: str | None = None


@dataclass(frozen=True)
class Kind:
    """The goods of one leaf category."""

    category: str
    noun: str  # Russian, as a title starts: "Смартфон"
    noun_en: str  # as a title ends: "smartphone"
    brands: tuple[str, ...]
    price_rub: tuple[int, int]  # cheapest and dearest, in roubles
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # besides colour
    vat_rate: int = 20
    coloured: bool = True


TREE = (
    CategoryNode("electronics", "Электроника", "Electronics"),
    CategoryNode("phones-and-gadgets", "Телефоны и гаджеты", "Phones and gadgets", "electronics"),
    CategoryNode("smartphones", "Смартфоны", "Smartphones", "phones-and-gadgets"),
    CategoryNode("tablets", "Планшеты", "Tablets", "phones-and-gadgets"),
    CategoryNode("smartwatches", "Умные часы", "Smartwatches", "phones-and-gadgets"),
    CategoryNode("audio", "Аудиотехника", "Audio", "electronics"),
    CategoryNode("headphones", "Наушники", "Headphones", "audio"),
    CategoryNode("speakers", "Портативные колонки", "Portable speakers", "audio"),
    CategoryNode("computers", "Компьютеры", "Computers", "electronics"),
    CategoryNode("laptops", "Ноутбуки", "Laptops", "computers"),
    CategoryNode("monitors", "Мониторы", "Monitors", "computers"),
    CategoryNode("keyboards", "Клавиатуры", "Keyboards", "computers"),
    CategoryNode("tv", "Телевизоры", "TVs", "electronics"),
    CategoryNode("appliances", "Бытовая техника", "Appliances"),
    CategoryNode("kitchen-appliances", "Техника для кухни", "Kitchen appliances", "appliances"),
    CategoryNode("kettles", "Электрочайники", "Electric kettles", "kitchen-appliances"),
    CategoryNode("coffee-machines", "Кофемашины", "Coffee machines", "kitchen-appliances"),
    CategoryNode("air-fryers", "Аэрогрили", "Air fryers", "kitchen-appliances"),
    CategoryNode("home-appliances", "Техника для дома", "Home appliances", "appliances"),
    CategoryNode("vacuum-cleaners", "Пылесосы", "Vacuum cleaners", "home-appliances"),
    CategoryNode("irons", "Утюги", "Irons", "home-appliances"),
    CategoryNode("clothing", "Одежда", "Clothing"),
    CategoryNode("t-shirts", "Футболки", "T-shirts", "clothing"),
    CategoryNode("jeans", "Джинсы", "Jeans", "clothing"),
    CategoryNode("jackets", "Куртки", "Jackets", "clothing"),
    CategoryNode("dresses", "Платья", "Dresses", "clothing"),
    CategoryNode("shoes", "Обувь", "Shoes"),
    CategoryNode("sneakers", "Кроссовки", "Sneakers", "shoes"),
    CategoryNode("running-shoes", "Беговые кроссовки", "Running shoes", "shoes"),
    CategoryNode("boots", "Ботинки", "Boots", "shoes"),
    CategoryNode("home", "Дом", "Home"),
    CategoryNode("cookware", "Посуда", "Cookware", "home"),
    CategoryNode("frying-pans", "Сковороды", "Frying pans", "cookware"),
    CategoryNode("saucepans", "Кастрюли", "Saucepans", "cookware"),
    CategoryNode("bedding", "Постельное бельё", "Bedding", "home"),
    CategoryNode("towels", "Полотенца", "Towels", "home"),
    CategoryNode("sports", "Спорт", "Sports"),
    CategoryNode("fitness", "Фитнес", "Fitness", "sports"),
    CategoryNode("yoga-mats", "Коврики для йоги", "Yoga mats", "fitness"),
    CategoryNode("dumbbells", "Гантели", "Dumbbells", "fitness"),
    CategoryNode("fitness-trackers", "Фитнес-браслеты", "Fitness trackers", "fitness"),
    CategoryNode("bicycles", "Велосипеды", "Bicycles", "sports"),
    CategoryNode("beauty", "Красота", "Beauty"),
    CategoryNode("shampoos", "Шампуни", "Shampoos", "beauty"),
    CategoryNode("face-creams", "Кремы для лица", "Face creams", "beauty"),
    CategoryNode("kids", "Детям", "Kids"),
    CategoryNode("building-sets", "Конструкторы", "Building sets", "kids"),
    CategoryNode("dolls", "Куклы", "Dolls", "kids"),
)

_PHONES = ("Apple", "Samsung", "Xiaomi", "Honor", "realme", "HUAWEI", "POCO", "TECNO", "Infinix", "OnePlus")
_AUDIO = ("Sony", "JBL", "Apple", "Samsung", "Xiaomi", "Marshall", "Sennheiser", "Яндекс", "Huawei", "Edifier")
_COMPUTERS = ("Lenovo", "ASUS", "HP", "Acer", "MSI", "Huawei", "Apple", "Dell", "Digma", "Gigabyte")
_KITCHEN = ("Philips", "Tefal", "Bosch", "Redmond", "Polaris", "De'Longhi", "Xiaomi", "Kitfort", "Scarlett", "Braun")
_CLOTHES = ("Zarina", "Befree", "Gloria Jeans", "Love Republic", "O'stin", "Henderson", "Levi's", "Lacoste", "Uniqlo", "Mango")
_SHOES = ("Nike", "adidas", "PUMA", "New Balance", "ASICS", "Reebok", "Salomon", "Ekonika", "Carlo Pazolini", "Skechers")
_HOME = ("Tefal", "Rondell", "Attribute", "Hoff", "Самойловский текстиль", "Ikea", "Fissman", "Гжель", "Арт Дизайн", "Mona Liza")
_SPORT = ("Decathlon", "Torneo", "Stern", "Forward", "Stels", "Demix", "Xiaomi", "Garmin", "Huawei", "Starfit")
_BEAUTY = ("L'Oréal Paris", "Garnier", "Natura Siberica", "Nivea", "La Roche-Posay", "Vichy", "Чистая линия", "Pantene", "Estel", "Librederm")
_KIDS = ("LEGO", "Barbie", "Mattel", "Hasbro", "Полесье", "Игрушки Пома", "Zapf Creation", "Sluban", "Happy Baby", "Хэппи")

CLOTHING_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SHOE_SIZES = tuple(str(size) for size in range(36, 47))

KINDS = (
    Kind("smartphones", "Смартфон", "smartphone", _PHONES, (6_000, 160_000), {"memory": ("64 GB", "128 GB", "256 GB", "512 GB", "1 TB")}),
    Kind("tablets", "Планшет", "tablet", _PHONES, (9_000, 180_000), {"memory": ("64 GB", "128 GB", "256 GB", "512 GB")}),
    Kind("smartwatches", "Умные часы", "smartwatch", _PHONES, (3_000, 90_000), {"size": ("41 mm", "44 mm", "45 mm", "46 mm")}),
    Kind("headphones", "Наушники", "headphones", _AUDIO, (700, 45_000), {"connection": ("wireless", "wired")}),
    Kind("speakers", "Портативная колонка", "portable speaker", _AUDIO, (1_500, 60_000), {"power": ("10 W", "20 W", "40 W", "100 W")}),
    Kind("laptops", "Ноутбук", "laptop", _COMPUTERS, (30_000, 350_000), {"memory": ("256 GB", "512 GB", "1 TB"), "screen": ('14"', '15.6"', '16"', '17.3"')}),
    Kind("monitors", "Монитор", "monitor", _COMPUTERS, (9_000, 120_000), {"screen": ('24"', '27"', '32"', '34"')}),
    Kind("keyboards", "Клавиатура", "keyboard", _COMPUTERS, (800, 25_000), {"connection": ("wireless", "wired")}),
    Kind("tv", "Телевизор", "TV", ("Samsung", "LG", "Sony", "Haier", "Hisense", "TCL", "Xiaomi", "Яндекс", "Sber", "Philips"), (15_000, 400_000), {"screen": ('32"', '43"', '50"', '55"', '65"', '75"')}),
    Kind("kettles", "Электрочайник", "electric kettle", _KITCHEN, (900, 15_000), {"material": ("glass", "steel", "plastic"), "volume": ("1.5 l", "1.7 l", "2 l")}),
    Kind("coffee-machines", "Кофемашина", "coffee machine", _KITCHEN, (8_000, 250_000), {"power": ("1200 W", "1450 W", "1500 W")}),
    Kind("air-fryers", "Аэрогриль", "air fryer", _KITCHEN, (3_000, 30_000), {"volume": ("3.5 l", "5 l", "6.5 l", "9 l")}),
    Kind("vacuum-cleaners", "Пылесос", "vacuum cleaner", ("Dyson", "Xiaomi", "Samsung", "LG", "Philips", "Bosch", "Kitfort", "Tefal", "Dreame", "Roborock"), (4_000, 90_000), {"power": ("400 W", "1400 W", "2000 W")}),
    Kind("irons", "Утюг", "iron", _KITCHEN, (1_200, 20_000), {"power": ("2000 W", "2400 W", "2800 W")}),
    Kind("t-shirts", "Футболка", "T-shirt", _CLOTHES, (400, 6_000), {"size": CLOTHING_SIZES, "material": ("cotton", "linen", "polyester")}),
    Kind("jeans", "Джинсы", "jeans", _CLOTHES, (1_500, 15_000), {"size": CLOTHING_SIZES, "material": ("cotton", "denim")}),
    Kind("jackets", "Куртка", "jacket", _CLOTHES, (3_000, 40_000), {"size": CLOTHING_SIZES, "material": ("polyester", "leather", "wool")}),
    Kind("dresses", "Платье", "dress", _CLOTHES, (1_500, 20_000), {"size": CLOTHING_SIZES, "material": ("cotton", "silk", "viscose")}),
    Kind("sneakers", "Кроссовки", "sneakers", _SHOES, (2_500, 25_000), {"size": SHOE_SIZES, "material": ("leather", "textile", "suede")}),
    Kind("running-shoes", "Беговые кроссовки", "running shoes", _SHOES, (4_000, 25_000), {"size": SHOE_SIZES}),
    Kind("boots", "Ботинки", "boots", _SHOES, (4_000, 35_000), {"size": SHOE_SIZES, "material": ("leather", "suede")}),
    Kind("frying-pans", "Сковорода", "frying pan", _HOME, (700, 12_000), {"material": ("aluminium", "cast iron", "steel"), "diameter": ("20 cm", "24 cm", "26 cm", "28 cm")}),
    Kind("saucepans", "Кастрюля", "saucepan", _HOME, (800, 15_000), {"material": ("steel", "enamel"), "volume": ("2 l", "3 l", "5 l")}),
    Kind("bedding", "Комплект постельного белья", "bed linen set", _HOME, (1_500, 15_000), {"size": ("single", "double", "euro", "family"), "material": ("cotton", "satin", "linen")}),
    Kind("towels", "Полотенце", "towel", _HOME, (300, 3_000), {"size": ("50x90", "70x140", "100x150")}),
    Kind("yoga-mats", "Коврик для йоги", "yoga mat", _SPORT, (500, 6_000), {"material": ("TPE", "PVC", "rubber")}),
    Kind("dumbbells", "Гантели", "dumbbells", _SPORT, (700, 20_000), {"weight": ("2 kg", "5 kg", "10 kg", "20 kg")}),
    Kind("fitness-trackers", "Фитнес-браслет", "fitness tracker", _SPORT, (1_500, 25_000)),
    Kind("bicycles", "Велосипед", "bicycle", _SPORT, (10_000, 150_000), {"wheel": ('20"', '24"', '26"', '27.5"', '29"')}),
    Kind("shampoos", "Шампунь", "shampoo", _BEAUTY, (200, 3_000), {"volume": ("250 ml", "400 ml", "1 l")}, coloured=False),
    Kind("face-creams", "Крем для лица", "face cream", _BEAUTY, (300, 8_000), {"volume": ("30 ml", "50 ml")}, coloured=False),
    Kind("building-sets", "Конструктор", "building set", _KIDS, (500, 40_000), {"age": ("3+", "6+", "8+", "12+")}, vat_rate=10),
    Kind("dolls", "Кукла", "doll", _KIDS, (500, 8_000), {"age": ("3+", "6+")}, vat_rate=10),
)
