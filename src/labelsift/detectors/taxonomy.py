"""The local models' class names as Rekognition-style labels: names, parents, aliases, categories.

Rekognition names labels in Title Case ("Cell Phone"), returns every ancestor of a label in its
`Parents` (Dog: Canine, Pet, Mammal, Animal) and returns each ancestor as a label of its own.
The local backend does the same with the small hand-made tree below:

- `PARENTS` gives each node's direct parents; `Taxonomy.ancestors` walks them (nearest first).
- `CATEGORIES` is set on a few nodes; a node without one inherits its ancestors' categories.
- COCO classes (NanoDet) are renamed by `COCO_NAMES` and hang in the tree by their new name.
- ImageNet classes (EfficientNet-Lite0) are named from their first WordNet synonym, title-cased
  ("robin, American robin" → "Robin", aliases "American Robin", "Turdus migratorius"), except
  where `IMAGENET_NAMES` renames them (a COCO name for the same thing, or a clash such as the
  bird "kite" and the toy). Each hangs under the family that `imagenet_family` gives it, a
  WordNet-like grouping by class index (birds, dogs, cats, vehicles, food, …).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from labelsift.models import Instance, Label

ANIMALS = "Animals and Pets"
VEHICLES = "Vehicles and Automotive"
FOOD = "Food and Beverage"
PEOPLE = "Person Description"
FURNITURE = "Furniture and Furnishings"
TECHNOLOGY = "Technology and Computing"
HOME = "Home and Indoors"
PLANTS = "Plants and Flowers"
APPAREL = "Apparel and Accessories"
SPORTS = "Sports"
HOBBIES = "Hobbies and Interests"
BUILDINGS = "Buildings and Architecture"
NATURE = "Nature and Outdoors"
OBJECTS = "Everyday Objects"
TRAVEL = "Travel and Transportation"

PARENTS: Mapping[str, tuple[str, ...]] = {
    # animals
    "Mammal": ("Animal",),
    "Pet": ("Animal",),
    "Wildlife": ("Animal",),
    "Sea Life": ("Animal",),
    "Bird": ("Animal",),
    "Fish": ("Sea Life",),
    "Amphibian": ("Animal",),
    "Reptile": ("Animal",),
    "Insect": ("Invertebrate",),
    "Butterfly": ("Insect",),
    "Arachnid": ("Invertebrate",),
    "Invertebrate": ("Animal",),
    "Crustacean": ("Sea Life", "Invertebrate"),
    "Canine": ("Mammal",),
    "Dog": ("Canine", "Pet"),
    "Wolf": ("Canine", "Wildlife"),
    "Fox": ("Canine", "Wildlife"),
    "Cat": ("Mammal", "Pet"),
    "Big Cat": ("Mammal", "Wildlife"),
    "Bear": ("Mammal", "Wildlife"),
    "Horse": ("Mammal",),
    "Sheep": ("Mammal",),
    "Cattle": ("Mammal",),
    "Cow": ("Cattle",),
    "Elephant": ("Mammal", "Wildlife"),
    "Zebra": ("Mammal", "Wildlife"),
    "Giraffe": ("Mammal", "Wildlife"),
    "Primate": ("Mammal",),
    "Rodent": ("Mammal",),
    "Rabbit": ("Mammal", "Pet"),
    "Antelope": ("Mammal", "Wildlife"),
    "Marine Mammal": ("Mammal", "Sea Life"),
    # vehicles
    "Vehicle": ("Transportation",),
    "Car": ("Vehicle",),
    "Truck": ("Vehicle",),
    "Bus": ("Vehicle",),
    "Train": ("Vehicle",),
    "Bicycle": ("Vehicle",),
    "Motorcycle": ("Vehicle",),
    "Aircraft": ("Vehicle",),
    "Airplane": ("Aircraft",),
    "Watercraft": ("Vehicle",),
    "Boat": ("Watercraft",),
    # food and drink
    "Fruit": ("Food", "Plant"),
    "Vegetable": ("Food", "Plant"),
    "Dessert": ("Food",),
    "Bread": ("Food",),
    "Sandwich": ("Food",),
    "Hot Dog": ("Food",),
    "Pizza": ("Food",),
    "Burger": ("Food",),
    "Donut": ("Dessert",),
    "Cake": ("Dessert",),
    "Banana": ("Fruit",),
    "Apple": ("Fruit",),
    "Orange": ("Fruit",),
    "Broccoli": ("Vegetable",),
    "Carrot": ("Vegetable",),
    "Coffee": ("Beverage",),
    "Alcohol": ("Beverage",),
    "Wine": ("Alcohol",),
    # tableware
    "Coffee Cup": ("Cup",),
    "Wine Glass": ("Glass",),
    "Fork": ("Cutlery",),
    "Knife": ("Cutlery",),
    "Spoon": ("Cutlery",),
    # home
    "Chair": ("Furniture",),
    "Couch": ("Furniture",),
    "Bed": ("Furniture",),
    "Table": ("Furniture",),
    "Dining Table": ("Table",),
    "Bench": ("Furniture",),
    "Cabinet": ("Furniture",),
    "Potted Plant": ("Plant",),
    "Flower": ("Plant",),
    "Microwave": ("Appliance",),
    "Oven": ("Appliance",),
    "Toaster": ("Appliance",),
    "Refrigerator": ("Appliance",),
    "Hair Dryer": ("Appliance",),
    # technology
    "Screen": ("Electronics",),
    "TV": ("Screen",),
    "Monitor": ("Screen",),
    "Computer": ("Electronics",),
    "Laptop": ("Computer",),
    "Computer Keyboard": ("Electronics",),
    "Mouse": ("Electronics",),
    "Remote Control": ("Electronics",),
    "Phone": ("Electronics",),
    "Cell Phone": ("Phone",),
    "Camera": ("Electronics",),
    # apparel and things people carry
    "Footwear": ("Clothing",),
    "Hat": ("Clothing",),
    "Accessories": ("Clothing",),
    "Tie": ("Accessories",),
    "Bag": ("Accessories",),
    "Handbag": ("Bag",),
    "Backpack": ("Bag",),
    "Suitcase": ("Luggage",),
    "Luggage": ("Bag",),
    # sports and toys
    "Ball": ("Sports Equipment",),
    "Ski": ("Sports Equipment",),
    "Snowboard": ("Sports Equipment",),
    "Baseball Bat": ("Sports Equipment",),
    "Baseball Glove": ("Sports Equipment",),
    "Skateboard": ("Sports Equipment",),
    "Surfboard": ("Sports Equipment",),
    "Tennis Racket": ("Sports Equipment",),
    "Frisbee": ("Toy",),
    "Kite": ("Toy",),
    "Teddy Bear": ("Toy",),
    "Stop Sign": ("Sign",),
    "Mountain": ("Nature",),
    "Shore": ("Nature",),
}

CATEGORIES: Mapping[str, tuple[str, ...]] = {
    "Animal": (ANIMALS,),
    "Person": (PEOPLE,),
    "Transportation": (VEHICLES,),
    "Food": (FOOD,),
    "Beverage": (FOOD,),
    "Fruit": (FOOD,),
    "Vegetable": (FOOD,),
    "Cup": (FOOD,),
    "Glass": (FOOD,),
    "Bowl": (FOOD,),
    "Bottle": (FOOD,),
    "Cutlery": (HOME,),
    "Furniture": (FURNITURE,),
    "Plant": (PLANTS,),
    "Fungus": (PLANTS,),
    "Appliance": (HOME,),
    "Sink": (HOME,),
    "Toilet": (HOME,),
    "Vase": (HOME,),
    "Electronics": (TECHNOLOGY,),
    "Clothing": (APPAREL,),
    "Umbrella": (APPAREL,),
    "Sports Equipment": (SPORTS,),
    "Toy": (HOBBIES,),
    "Musical Instrument": (HOBBIES,),
    "Building": (BUILDINGS,),
    "Nature": (NATURE,),
    "Traffic Light": (TRAVEL,),
    "Fire Hydrant": (TRAVEL,),
    "Sign": (TRAVEL,),
    "Parking Meter": (TRAVEL,),
    "Book": (OBJECTS,),
    "Clock": (OBJECTS,),
    "Scissors": (OBJECTS,),
    "Toothbrush": (OBJECTS,),
}

ALIASES: Mapping[str, tuple[str, ...]] = {
    "Person": ("Human",),
    "Cell Phone": ("Mobile Phone",),
    "TV": ("Television",),
    "Couch": ("Sofa",),
    "Airplane": ("Aeroplane",),
    "Motorcycle": ("Motorbike",),
    "Bicycle": ("Bike",),
    "Donut": ("Doughnut",),
}

COCO_NAMES: Mapping[str, str] = {
    "tv": "TV",
    "skis": "Ski",
    "sports ball": "Ball",
    "remote": "Remote Control",
    "keyboard": "Computer Keyboard",
    "hair drier": "Hair Dryer",
    "motorbike": "Motorcycle",
}

# ImageNet-1k class index -> label name, where the title-cased first synonym would be wrong.
IMAGENET_NAMES: Mapping[int, str] = {
    7: "Rooster",
    21: "Kite Bird",
    134: "Crane Bird",
    281: "Tabby Cat",
    282: "Tiger Cat",
    341: "Pig",
    468: "Taxi",
    487: "Cell Phone",
    504: "Coffee Cup",
    508: "Computer Keyboard",
    517: "Construction Crane",
    532: "Dining Table",
    589: "Hair Dryer",
    608: "Jeans",
    620: "Laptop",
    638: "Leotard",
    639: "Swimsuit",
    651: "Microwave",
    664: "Monitor",
    673: "Mouse",
    680: "Pacifier",
    681: "Laptop",
    704: "Parking Meter",
    717: "Pickup Truck",
    737: "Soda Bottle",
    744: "Missile",
    760: "Refrigerator",
    761: "Remote Control",
    782: "Monitor",
    831: "Couch",
    836: "Sunglasses",
    850: "Teddy Bear",
    851: "TV",
    859: "Toaster",
    879: "Umbrella",
    883: "Vase",
    916: "Website",
    920: "Traffic Light",
    934: "Hot Dog",
    968: "Cup",
    978: "Shore",
    970: "Mountain",
    998: "Ear of Grain",
}

_FAMILY_RANGES: tuple[tuple[int, int, str], ...] = (  # inclusive index ranges of ImageNet-1k
    (0, 6, "Fish"),
    (7, 24, "Bird"),
    (25, 32, "Amphibian"),
    (33, 68, "Reptile"),
    (69, 69, "Invertebrate"),
    (70, 78, "Arachnid"),
    (79, 79, "Invertebrate"),
    (80, 100, "Bird"),
    (101, 101, "Elephant"),
    (102, 106, "Mammal"),
    (107, 117, "Invertebrate"),
    (118, 126, "Crustacean"),
    (127, 146, "Bird"),
    (147, 150, "Marine Mammal"),
    (151, 268, "Dog"),
    (269, 275, "Wolf"),
    (276, 276, "Wildlife"),
    (277, 280, "Fox"),
    (281, 285, "Cat"),
    (286, 293, "Big Cat"),
    (294, 297, "Bear"),
    (298, 299, "Mammal"),
    (300, 320, "Insect"),
    (321, 326, "Butterfly"),
    (327, 329, "Sea Life"),
    (330, 332, "Rabbit"),
    (333, 338, "Rodent"),
    (339, 339, "Horse"),
    (340, 340, "Mammal"),
    (341, 343, "Mammal"),
    (344, 344, "Wildlife"),
    (345, 347, "Cattle"),
    (348, 349, "Sheep"),
    (350, 353, "Antelope"),
    (354, 364, "Mammal"),
    (365, 384, "Primate"),
    (385, 386, "Elephant"),
    (387, 388, "Mammal"),
    (389, 397, "Fish"),
    (924, 927, "Food"),
    (928, 929, "Dessert"),
    (930, 932, "Bread"),
    (933, 933, "Burger"),
    (934, 935, "Food"),
    (936, 946, "Vegetable"),
    (947, 947, "Fungus"),
    (948, 957, "Fruit"),
    (959, 965, "Food"),
    (971, 980, "Nature"),
    (981, 983, "Person"),
    (984, 984, "Plant"),
    (985, 986, "Flower"),
    (987, 987, "Vegetable"),
    (988, 990, "Plant"),
    (991, 997, "Fungus"),
)

_OBJECT_FAMILIES: Mapping[str, str] = {  # family -> ImageNet-1k class indices
    "Car": "407 436 468 511 609 627 656 661 751 817",
    "Truck": "555 569 675 717 734 864 867",
    "Bus": "654 779 874",
    "Train": "466 547 565 705 820 829",
    "Bicycle": "444 671 870 880",
    "Motorcycle": "665 670",
    "Boat": "472 484 554 576 625 814 871 914",
    "Watercraft": "403 510 628 724 780 833 913",
    "Aircraft": "404 405 895 908",
    "Vehicle": "408 450 537 561 573 575 586 595 603 612 690 757 802 803 847 866",
    "Chair": "423 559 765 857",
    "Bed": "431 516 520 564",
    "Table": "526 532 736",
    "Bench": "703",
    "Cabinet": "453 493 495 548 553 648 894",
    "Appliance": "521 534 545 550 606 651 760 766 786 811 827 859 882 891 897",
    "Computer": "527 590 620 681",
    "Phone": "487 528 707",
    "Screen": "664 782 851",
    "Electronics": "482 485 508 605 632 662 673 713 742 745 754 761 848",
    "Camera": "732 759",
    "Clothing": "399 400 411 445 459 474 501 568 578 601 608 610 614 617 "
    "638 639 652 655 689 697 735 775 834 841 842 869 887",
    "Footwear": "502 514 630 770 774",
    "Hat": "433 439 452 515 667 793 808",
    "Accessories": "451 457 836 837 906",
    "Bag": "414 636 748 893",
    "Ball": "429 430 522 574 722 768 805 852 890",
    "Musical Instrument": "401 402 420 432 486 513 541 546 558 566 577 579 593 "
    "594 641 642 683 684 687 699 776 822 875 881 889",
    "Building": "410 415 424 425 449 454 467 483 497 498 500 509 "
    "582 663 668 698 727 743 762 788 832 860 865 915",
    "Cup": "504 968",
    "Coffee": "967",
    "Beverage": "969",
    "Wine": "966",
    "Bottle": "440 720 737 898 907",
    "Bowl": "659 809",
    "Toy": "850 611",
    "Plant": "738",
}

_LATIN_ENDING = re.compile(r"(us|um|a|ae|is|i|ii|ensis|es|oides|ata|ia|ina)$")


def imagenet_family(index: int) -> str | None:
    """The taxonomy node an ImageNet-1k class hangs under, or None when it has no family here."""
    for family, members in _OBJECT_FAMILIES.items():
        if str(index) in members.split():
            return family
    for first, last, family in _FAMILY_RANGES:
        if first <= index <= last:
            return family
    return None


def title(name: str) -> str:
    """Title-case a class name, keeping words already capitalized inside ("CD player" → "CD Player")."""
    words = name.replace("_", " ").split(" ")
    return " ".join(
        word if any(ch.isupper() for ch in word) else word[:1].upper() + word[1:] for word in words
    )


def _is_binomial(synonym: str) -> bool:
    words = synonym.split()
    return (
        len(words) >= 2
        and words[0][:1].isupper()
        and all(word.islower() for word in words[1:])
        and _LATIN_ENDING.search(words[-1]) is not None
    )


def imagenet_label(index: int, synonyms: str) -> tuple[str, tuple[str, ...]]:
    """(name, aliases) of an ImageNet class from its comma-separated WordNet synonyms."""
    parts = [part.strip() for part in synonyms.split(",") if part.strip()]
    name = IMAGENET_NAMES.get(index) or title(parts[0])
    aliases: list[str] = []
    for part in parts:
        alias = part if _is_binomial(part) else title(part)
        if alias != name and alias not in aliases:
            aliases.append(alias)
    return name, tuple(aliases)


def coco_label(name: str) -> str:
    return COCO_NAMES.get(name) or title(name)


class Taxonomy:
    """A tree (a DAG: Dog is both Canine and Pet) of label names, and the labels it implies."""

    def __init__(
        self,
        parents: Mapping[str, Sequence[str]] = PARENTS,
        categories: Mapping[str, Sequence[str]] = CATEGORIES,
        aliases: Mapping[str, Sequence[str]] = ALIASES,
    ) -> None:
        self._parents = {name: tuple(values) for name, values in parents.items()}
        self._categories = {name: tuple(values) for name, values in categories.items()}
        self._aliases = {name: tuple(values) for name, values in aliases.items()}
        self._ancestors: dict[str, tuple[str, ...]] = {}
        for name in self._parents:
            self._ancestors[name] = self._walk(name)

    def extended(
        self, parents: Mapping[str, Sequence[str]], aliases: Mapping[str, Sequence[str]]
    ) -> Taxonomy:
        """A taxonomy with more leaves (nodes already present keep their parents)."""
        merged_parents = {**parents, **self._parents}
        merged_aliases = {**aliases, **self._aliases}
        return Taxonomy(merged_parents, self._categories, merged_aliases)

    def _walk(self, name: str) -> tuple[str, ...]:
        found: list[str] = []
        frontier = list(self._parents.get(name, ()))
        while frontier:
            following: list[str] = []
            for node in frontier:
                if node != name and node not in found:
                    found.append(node)
                    following.extend(self._parents.get(node, ()))
            frontier = following
        return tuple(found)

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every ancestor, nearest first (Dog: Canine, Pet, Mammal, Animal)."""
        return self._ancestors.get(name) or self._walk(name)

    def categories(self, name: str) -> tuple[str, ...]:
        own = self._categories.get(name)
        if own:
            return own
        found: list[str] = []
        for ancestor in self.ancestors(name):
            for category in self._categories.get(ancestor, ()):
                if category not in found:
                    found.append(category)
        return tuple(found)

    def aliases(self, name: str) -> tuple[str, ...]:
        return self._aliases.get(name, ())

    def labels(
        self,
        confidences: Mapping[str, float],
        instances: Mapping[str, Iterable[Instance]] | None = None,
    ) -> list[Label]:
        """Labels for names seen with a confidence (0-100), plus each ancestor as a label of its own.

        An ancestor's confidence is the highest of its own (when seen directly) and its
        descendants'. Sorted by confidence, highest first, then by name.
        """
        merged: dict[str, float] = {}
        for name, confidence in confidences.items():
            for node in (name, *self.ancestors(name)):
                merged[node] = max(merged.get(node, 0.0), confidence)
        boxes = instances or {}
        return [
            Label(
                name=name,
                confidence=round(min(100.0, confidence), 3),
                parents=list(self.ancestors(name)),
                aliases=list(self.aliases(name)),
                categories=list(self.categories(name)),
                instances=list(boxes.get(name, ())),
            )
            for name, confidence in sorted(merged.items(), key=lambda item: (-item[1], item[0]))
        ]
