"""The hand-curated part of tagd's default vocabulary: which tags people use, how they nest.

Each `T(...)` is one tag. Its ImageNet classes are every class under the WordNet 3.0
synsets in `wn` (the hierarchy does most of the work: 118 breeds under "dog"), plus the
classes listed in `add`, minus those in `drop` (WordNet files parking meters under
"timepiece" and minivans under "truck"). A tag also holds every class of its child tags,
so P(animal) is the probability mass of every animal class.

Class numbers are ImageNet-1k indices (0..999); `build_vocab.py` stores their WordNet ids
next to them so the data file can be read without this table.

"person" is special: ImageNet has no person class, yet people are the commonest subject of
photos. Its evidence is the probability mass of classes that are people (scuba diver,
groom, baseball player) or that are only seen on or with people: worn clothing, headgear,
glasses, and gym apparatus in use. That is a proxy, and tagd says so; the evaluation
script measures how good it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class T:
    name: str
    parent: str | None = None
    wn: tuple[str, ...] = ()
    add: tuple[int, ...] = ()
    drop: tuple[int, ...] = ()
    syn: tuple[str, ...] = ()
    # Scale applied to the summed probability. The person proxy collects only the little
    # mass that ImageNet spreads over clothing and accessories (a photo of a man in a suit
    # scores ~0.05 "suit"), so it is scaled up to read like the other tags' scores.
    weight: float = 1.0
    threshold: float | None = None  # None: the class-count rule in build_vocab.py
    notes: str = field(default="", compare=False)


def r(a: int, b: int) -> tuple[int, ...]:
    """Inclusive range of class indices."""
    return tuple(range(a, b + 1))


TAGS: tuple[T, ...] = (
    # ---- people ------------------------------------------------------------------------
    T("person", None, wn=("n00007846",),
      add=(399, 400, 411, 433, 439, 445, 451, 452, 457, 459, 465, 474, 501, 515, 518, 552,
           560, 568, 570, 578, 601, 608, 610, 614, 615, 617, 629, 638, 639, 643, 652, 655,
           658, 667, 678, 679, 689, 691, 697, 735, 775, 793, 796, 801, 808, 824, 834, 836,
           837, 841, 842, 869, 887, 903, 906, 416, 602, 702, 880),
      syn=("people", "human", "man", "woman", "child", "portrait"),
      weight=4.0, threshold=0.13,
      notes="proxy: people classes + worn clothing and accessories + gym apparatus"),
    # ---- animals -----------------------------------------------------------------------
    T("animal", None, wn=("n00015388",), syn=("animals", "wildlife")),
    T("dog", "animal", wn=("n02084071",), syn=("puppy",)),
    T("cat", "animal", wn=("n02121808",), syn=("kitten", "kitty")),
    T("big cat", "animal", add=r(286, 293)),
    T("lion", "big cat", add=(291,)),
    T("tiger", "big cat", add=(292,)),
    T("leopard", "big cat", add=(288, 289, 290)),
    T("wolf", "animal", add=r(269, 273)),
    T("fox", "animal", wn=("n02118333",)),
    T("bear", "animal", wn=("n02131653",)),
    T("bird", "animal", wn=("n01503061",)),
    T("chicken", "bird", add=(7, 8), syn=("hen", "rooster")),
    T("duck", "bird", wn=("n01846331",)),
    T("goose", "bird", add=(99,)),
    T("swan", "bird", add=(100,)),
    T("parrot", "bird", wn=("n01816887",)),
    T("owl", "bird", add=(24,)),
    T("eagle", "bird", add=(21, 22)),
    T("penguin", "bird", add=(145,)),
    T("flamingo", "bird", add=(130,)),
    T("heron", "bird", add=(131, 132, 133)),
    T("stork", "bird", add=(127, 128)),
    T("peacock", "bird", add=(84,)),
    T("hummingbird", "bird", add=(94,)),
    T("fish", "animal", wn=("n02512053",)),
    T("shark", "fish", add=(2, 3, 4)),
    T("snake", "animal", wn=("n01726692",)),
    T("lizard", "animal", wn=("n01674464",)),
    T("turtle", "animal", wn=("n01662784",)),
    T("crocodile", "animal", add=(49, 50), syn=("alligator",)),
    T("frog", "animal", wn=("n01639765",)),
    T("insect", "animal", wn=("n02159955",)),
    T("butterfly", "insect", wn=("n02274259",)),
    T("bee", "insect", add=(309,)),
    T("beetle", "insect", wn=("n02164464",)),
    T("dragonfly", "insect", add=(319, 320)),
    T("spider", "animal", wn=("n01772222",)),
    T("horse", "animal", add=(339, 603), syn=("pony",)),
    T("zebra", "animal", add=(340,)),
    T("cow", "animal", add=(345, 346, 347, 690), syn=("cattle", "ox", "bull")),
    T("sheep", "animal", add=(348, 349)),
    T("pig", "animal", add=(341, 342, 343)),
    T("antelope", "animal", add=(351, 352, 353)),
    T("camel", "animal", add=(354,)),
    T("llama", "animal", add=(355,)),
    T("elephant", "animal", add=(101, 385, 386)),
    T("hippo", "animal", add=(344,), syn=("hippopotamus",)),
    T("monkey", "animal", wn=("n02484322",), add=(383, 384)),
    T("ape", "animal", wn=("n02470325",)),
    T("rabbit", "animal", add=(330, 331, 332), syn=("bunny", "hare")),
    T("squirrel", "animal", add=(335,)),
    T("rodent", "animal", wn=("n02329401",)),
    T("panda", "animal", add=(387, 388)),
    T("koala", "animal", add=(105,)),
    T("kangaroo", "animal", add=(104,)),
    T("whale", "animal", add=(147, 148)),
    T("seal", "animal", add=(150,), syn=("sea lion",)),
    T("crab", "animal", wn=("n01976957",), add=(125,)),
    T("lobster", "animal", add=(122, 123, 124)),
    T("snail", "animal", add=(113, 114)),
    T("jellyfish", "animal", add=(107,)),
    T("starfish", "animal", add=(327,)),
    # ---- vehicles ----------------------------------------------------------------------
    T("vehicle", None, wn=("n04524313",), drop=(428, 790, 791, 830, 847)),
    T("car", "vehicle", wn=("n02958343",), add=(656, 734, 573, 575), syn=("automobile",)),
    T("truck", "vehicle", wn=("n04490091",), add=(867, 595, 803), drop=(656, 734)),
    T("van", "vehicle", add=(656, 675, 734)),
    T("bus", "vehicle", wn=("n02924116",)),
    T("motorcycle", "vehicle", add=(665, 670), syn=("motorbike", "scooter")),
    T("bicycle", "vehicle", wn=("n02834778",), add=(870,), syn=("bike",)),
    T("train", "vehicle", add=(466, 547, 565, 705, 820), syn=("railway", "locomotive")),
    T("tram", "vehicle", add=(829,), syn=("streetcar",)),
    T("boat", "vehicle", wn=("n04530566",), syn=("ship",)),
    T("sailboat", "boat", add=(484, 780, 871, 914)),
    T("ship", "boat", add=(403, 510, 628, 724)),
    T("airplane", "vehicle", add=(404, 895), syn=("aeroplane", "plane", "aircraft")),
    T("hot air balloon", "vehicle", add=(417,)),
    T("rocket", "vehicle", add=(657, 744, 812), syn=("missile", "space shuttle")),
    T("tractor", "vehicle", add=(866,)),
    # ---- food and drink ----------------------------------------------------------------
    T("food", None, wn=("n07555863", "n07557434", "n07609840"), add=(923, 924, 925, 926, 959)),
    T("fruit", "food", wn=("n07705931",), add=(953, 955, 956, 957)),
    T("apple", "fruit", add=(948,)),
    T("banana", "fruit", add=(954,)),
    T("orange", "fruit", add=(950,)),
    T("lemon", "fruit", add=(951,)),
    T("strawberry", "fruit", add=(949,)),
    T("pineapple", "fruit", add=(953,)),
    T("vegetable", "food", wn=("n07707451",), add=(947, 987)),
    T("broccoli", "vegetable", add=(937,)),
    T("cabbage", "vegetable", add=(936, 938)),
    T("pizza", "food", add=(963,)),
    T("hot dog", "food", add=(934,)),
    T("burger", "food", add=(933,), syn=("hamburger", "cheeseburger")),
    T("sandwich", "food", add=(933, 934)),
    T("bread", "food", add=(930, 931, 932)),
    T("dessert", "food", wn=("n07609840",), add=(960,)),
    T("ice cream", "dessert", add=(928, 929)),
    T("soup", "food", add=(925, 926)),
    T("pasta", "food", add=(959,)),
    T("meal", "food", add=(923, 924, 935, 962, 964, 965), syn=("dish", "dinner", "lunch")),
    T("mushroom", None, add=(947, 991, 992, 993, 994, 995, 996, 997)),
    T("drink", None, wn=("n07881800",), syn=("beverage",)),
    T("coffee", "drink", add=(967, 504, 550, 505)),
    T("wine", "drink", add=(966, 907)),
    T("beer", "drink", add=(440, 441)),
    # ---- tableware and kitchen ---------------------------------------------------------
    T("tableware", None, add=(504, 968, 572, 441, 659, 809, 923, 910, 849, 505, 725, 868, 499, 773),
      syn=("dishes",)),
    T("cup", "tableware", add=(504, 968, 647), syn=("mug", "teacup")),
    T("glass", "tableware", add=(441, 572, 966), syn=("wine glass", "goblet")),
    T("bowl", "tableware", add=(659, 809)),
    T("plate", "tableware", add=(923,)),
    T("spoon", "tableware", add=(910, 618)),
    T("knife", "tableware", add=(499, 623)),
    T("bottle", None, wn=("n02876657",), add=(737, 898, 901), drop=(898,)),
    T("water bottle", "bottle", add=(898,)),
    T("teapot", "tableware", add=(849,)),
    T("kitchen", None, add=(544, 567, 909, 521, 651, 827, 859, 760, 534, 550, 766, 891, 896, 813, 618, 828)),
    T("pan", "kitchen", add=(567, 909, 544)),
    T("microwave", "kitchen", add=(651,)),
    T("oven", "kitchen", add=(827, 544), syn=("stove",)),
    T("toaster", "kitchen", add=(859,)),
    T("refrigerator", "kitchen", add=(760,), syn=("fridge",)),
    T("dishwasher", "kitchen", add=(534,)),
    T("sink", None, add=(896,), syn=("washbasin",)),
    # ---- furniture and home ------------------------------------------------------------
    T("furniture", None, wn=("n03405725",)),
    T("chair", "furniture", wn=("n03001627",)),
    T("sofa", "furniture", add=(831,), syn=("couch",)),
    T("bed", "furniture", add=(564, 520, 516, 431, 750, 721)),
    T("table", "furniture", add=(532, 526, 736), syn=("desk", "dining table")),
    T("bench", "furniture", add=(703,)),
    T("bookcase", "furniture", add=(453,), syn=("bookshelf",)),
    T("wardrobe", "furniture", add=(894, 493, 495, 492)),
    T("lamp", None, add=(846, 619)),
    T("clock", None, wn=("n03046257",)),
    T("watch", None, add=(531, 826)),
    T("vase", None, add=(883,)),
    T("houseplant", "plant", add=(738,), syn=("potted plant", "pot plant")),
    T("pillow", None, add=(721,), syn=("cushion",)),
    T("curtain", None, add=(794, 854, 905)),
    T("toilet", None, add=(861, 999)),
    T("bathtub", None, add=(435, 876)),
    T("book", None, add=(921, 917, 453, 454, 624), syn=("books",)),
    T("teddy bear", "toy", add=(850,), syn=("stuffed animal",)),
    T("toy", None, add=(850, 611, 719, 723)),
    T("umbrella", None, add=(879,)),
    T("backpack", "bag", add=(414,), syn=("rucksack",)),
    T("handbag", "bag", add=(748, 893), syn=("purse",)),
    T("bag", None, add=(414, 748, 636, 728, 797)),
    T("hair dryer", None, add=(589,), syn=("hair drier",)),
    T("candle", None, add=(470,)),
    # ---- electronics -------------------------------------------------------------------
    T("electronics", None, add=(851, 664, 782, 620, 681, 527, 590, 508, 673, 761, 487, 528, 707,
                                 759, 732, 754, 632, 605, 485, 482, 848, 742, 713, 745, 662, 592)),
    T("television", "electronics", add=(851, 782, 598, 548), syn=("tv",)),
    T("screen", "electronics", add=(664, 782, 851, 916)),
    T("computer", "electronics", add=(620, 681, 527, 590), syn=("pc",)),
    T("laptop", "computer", add=(620, 681), syn=("notebook",)),
    T("keyboard", "electronics", add=(508, 878, 810)),
    T("computer mouse", "electronics", add=(673,), syn=("mouse",)),
    T("remote control", "electronics", add=(761,), syn=("remote",)),
    T("phone", "electronics", wn=("n04401088",), syn=("telephone", "mobile phone", "cell phone", "smartphone")),
    T("camera", "electronics", add=(759, 732)),
    T("speaker", "electronics", add=(632,)),
    # ---- clothing and accessories ------------------------------------------------------
    T("clothing", None, wn=("n03051540",), syn=("clothes", "fashion")),
    T("hat", "clothing", wn=("n03497657",), add=(433, 793, 667, 715)),
    T("helmet", "clothing", add=(518, 560)),
    T("shoe", "clothing", wn=("n03380867",), syn=("shoes", "footwear")),
    T("tie", "clothing", add=(906, 457, 451), syn=("necktie",)),
    T("dress", "clothing", add=(578, 601, 689, 655)),
    T("swimwear", "clothing", add=(445, 639, 842), syn=("swimsuit", "bikini")),
    T("sunglasses", None, add=(836, 837), syn=("glasses",)),
    T("jewellery", None, add=(679,), syn=("jewelry", "necklace")),
    # ---- sport and leisure -------------------------------------------------------------
    T("sport", None, add=(416, 422, 543, 602, 702, 747, 795, 802, 450, 560, 752, 801, 693, 472)),
    T("ball", "sport", wn=("n02778669",), drop=(747,), syn=("sports ball",)),
    T("soccer", "ball", add=(805,), syn=("football",)),
    T("basketball", "ball", add=(430,)),
    T("tennis", "sport", add=(752, 852), syn=("tennis racket",)),
    T("baseball", "sport", add=(429, 981)),
    T("golf", "sport", add=(574, 575)),
    T("ski", "sport", add=(795,), syn=("skiing", "skis")),
    T("diving", "sport", add=(983, 801), syn=("scuba diving", "snorkelling")),
    T("kayak", "sport", add=(472, 693), syn=("canoe",)),
    T("gym", "sport", add=(416, 422, 543, 602, 702, 747), syn=("fitness",)),
    T("music", None, wn=("n03800933",), add=(650, 714), syn=("musical instrument",)),
    T("guitar", "music", wn=("n03467517",), add=(420,)),
    T("piano", "music", wn=("n03928116",)),
    T("violin", "music", add=(889, 486)),
    T("drum", "music", add=(541, 822, 542)),
    T("tent", None, add=(672, 915), syn=("camping",)),
    T("wedding", None, add=(982, 578)),
    # ---- street and buildings ----------------------------------------------------------
    T("traffic light", "street", add=(920,)),
    T("street sign", "street", add=(919,), syn=("stop sign", "road sign")),
    T("parking meter", "street", add=(704,)),
    T("street", None, add=(920, 919, 704, 640, 637, 571, 733, 557), syn=("road", "city")),
    T("building", None, wn=("n02913152",), add=(425, 437, 442, 483, 497, 663, 668, 698, 580, 900, 832, 500)),
    T("house", "building", add=(660, 425, 853, 858)),
    T("church", "building", add=(497, 442, 663), syn=("chapel", "monastery")),
    T("mosque", "building", add=(668,)),
    T("castle", "building", add=(483, 698), syn=("palace",)),
    T("lighthouse", "building", add=(437,)),
    T("shop", "building", wn=("n04202417",), add=(415, 424, 467, 582, 788, 860, 865, 454, 509),
      syn=("store",)),
    T("restaurant", "building", add=(762,)),
    T("bridge", None, wn=("n02898711",)),
    T("monument", None, add=(458, 649, 682, 863, 873, 832), syn=("memorial",)),
    T("fountain", None, add=(562,)),
    T("fence", None, add=(489, 716, 912, 825)),
    T("harbour", None, add=(536, 718, 460, 449), syn=("harbor", "pier", "dock")),
    # ---- nature and landscape ----------------------------------------------------------
    T("landscape", None, add=(970, 972, 973, 974, 975, 976, 977, 978, 979, 980, 460),
      syn=("nature", "scenery")),
    T("mountain", "landscape", add=(970, 980, 979), syn=("mountains", "alps")),
    T("volcano", "mountain", add=(980,)),
    T("cliff", "landscape", add=(972, 976)),
    T("beach", "landscape", add=(978, 977), syn=("seaside", "coast", "seashore")),
    T("lake", "landscape", add=(975,), syn=("lakeside",)),
    T("valley", "landscape", add=(979,)),
    T("reef", "landscape", add=(973,), syn=("coral reef", "underwater")),
    T("geyser", "landscape", add=(974,)),
    T("plant", None, add=(984, 985, 986, 987, 998, 738, 580), syn=("plants",)),
    T("flower", "plant", add=(985, 986), syn=("flowers", "daisy")),
    T("snow", None, add=(795, 802, 803, 537, 450), syn=("winter",)),
)


# ---- format 2: the detector's classes, and the breeds -------------------------------------
# A v2 bundle adds COCO's 80 classes (the detector, tagd/models/default) and the classifier's
# dog and cat breeds as tags of their own. The format-1 vocabulary of the float bundle is
# built from TAGS alone, unchanged.

# Each COCO class (in the detector's order) -> the tag it is evidence for.
COCO_TAGS: dict[str, str] = {
    "person": "person", "bicycle": "bicycle", "car": "car", "motorcycle": "motorcycle", "airplane": "airplane",
    "bus": "bus", "train": "train", "truck": "truck", "boat": "boat", "traffic light": "traffic light",
    "fire hydrant": "fire hydrant", "stop sign": "stop sign", "parking meter": "parking meter", "bench": "bench",
    "bird": "bird", "cat": "cat", "dog": "dog", "horse": "horse", "sheep": "sheep", "cow": "cow",
    "elephant": "elephant", "bear": "bear", "zebra": "zebra", "giraffe": "giraffe", "backpack": "backpack",
    "umbrella": "umbrella", "handbag": "handbag", "tie": "tie", "suitcase": "suitcase", "frisbee": "frisbee",
    "skis": "ski", "snowboard": "snowboard", "sports ball": "ball", "kite": "kite", "baseball bat": "baseball bat",
    "baseball glove": "baseball glove", "skateboard": "skateboard", "surfboard": "surfboard",
    "tennis racket": "tennis racket", "bottle": "bottle", "wine glass": "wine glass", "cup": "cup", "fork": "fork",
    "knife": "knife", "spoon": "spoon", "bowl": "bowl", "banana": "banana", "apple": "apple", "sandwich": "sandwich",
    "orange": "orange", "broccoli": "broccoli", "carrot": "carrot", "hot dog": "hot dog", "pizza": "pizza",
    "donut": "donut", "cake": "cake", "chair": "chair", "couch": "sofa", "potted plant": "houseplant", "bed": "bed",
    "dining table": "table", "toilet": "toilet", "tv": "television", "laptop": "laptop", "mouse": "computer mouse",
    "remote": "remote control", "keyboard": "keyboard", "cell phone": "phone", "microwave": "microwave",
    "oven": "oven", "toaster": "toaster", "sink": "sink", "refrigerator": "refrigerator", "book": "book",
    "clock": "clock", "vase": "vase", "scissors": "scissors", "teddy bear": "teddy bear", "hair drier": "hair dryer",
    "toothbrush": "toothbrush",
}

# A calibrated tag's rivals are the classifier's tags under the top of its own hierarchy (for
# "dog": the other animals); a top-level tag has none, except where named here. The detector
# takes animals it was never taught for people (a heron, a dolphin, a mandrill).
RIVAL_ROOTS: dict[str, str] = {"person": "animal"}

# Tags only the detector knows (ImageNet-1k has no class for them).
DETECTOR_TAGS: tuple[T, ...] = (
    T("giraffe", "animal"),
    T("fire hydrant", None, syn=("hydrant",)),
    T("stop sign", "street sign"),
    T("suitcase", "bag", syn=("luggage",)),
    T("frisbee", "sport"),
    T("snowboard", "sport", syn=("snowboarding",)),
    T("kite", "toy"),
    T("baseball bat", "baseball"),
    T("baseball glove", "baseball"),
    T("skateboard", "sport", syn=("skateboarding",)),
    T("surfboard", "sport", syn=("surfing",)),
    T("tennis racket", "tennis"),
    T("wine glass", "glass"),
    T("fork", "tableware"),
    T("carrot", "vegetable"),
    T("donut", "dessert", syn=("doughnut",)),
    T("cake", "dessert"),
    T("scissors", None),
    T("toothbrush", None),
)

# Breeds need a confident classifier (its breeds are often confused with each other) and are
# never written where their parent ("dog", "cat") is not (tagd.vocab caps a tag by its parent).
BREED_THRESHOLD = 0.35
DOG_BREED_CLASSES = tuple(i for i in range(151, 269) if i != 248)  # 248 "husky": Eskimo dog or Siberian? ambiguous
# Tabby, tiger cat and Egyptian cat are coat patterns ImageNet models confuse with each other
# (scikit-image's tabby, Chelsea, scores 0.4 "Egyptian cat"): only the two distinct breeds.
CAT_BREEDS: dict[int, str] = {283: "Persian cat", 284: "Siamese cat"}
# ImageNet's names, tidied where they carry a word people do not use.
BREED_NAMES: dict[str, str] = {
    "Maltese dog": "Maltese", "Brittany dog": "Brittany", "Groenendael dog": "Groenendael",
    "Bouvier des Flandres dog": "Bouvier des Flandres", "Newfoundland dog": "Newfoundland",
    "Great Pyrenees dog": "Great Pyrenees", "Mexican hairless dog (xoloitzcuintli)": "Xoloitzcuintli",
    "brussels griffon": "Brussels Griffon", "St. Bernard": "St. Bernard", "German Shepherd Dog": "German Shepherd",
}


def breed_tags(class_names: list[str]) -> tuple[T, ...]:
    """The breed tags for a classifier whose class `i` is called `class_names[i]`."""
    dogs = tuple(T(BREED_NAMES.get(class_names[i], class_names[i]), "dog", add=(i,), threshold=BREED_THRESHOLD)
                 for i in DOG_BREED_CLASSES)
    cats = tuple(T(name, "cat", add=(i,), threshold=BREED_THRESHOLD) for i, name in CAT_BREEDS.items())
    return dogs + cats
