"""The dataset registry: names, files, official hashes, mirrors, classes, split sizes."""

import dataclasses
import doctest
import re

import pytest

from fastidx import registry
from fastidx.registry import DATASETS, ROLES, DatasetSpec, FileSpec

EMNIST_SPLITS = {
    "byclass": (697932, 116323, 62),
    "bymerge": (697932, 116323, 47),
    "balanced": (112800, 18800, 47),
    "letters": (124800, 20800, 26),
    "digits": (240000, 40000, 10),
    "mnist": (60000, 10000, 10),
}

# From the issue (.gz SHA-256, size) and shared/data/README.md (decoded content SHA-256).
OFFICIAL = {
    ("mnist", "train_images"): (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    ("mnist", "train_labels"): (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ("mnist", "test_images"): (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    ("mnist", "test_labels"): (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                               "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ("fashion_mnist", "train_images"): (26421880,
                                        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", None),
    ("fashion_mnist", "train_labels"): (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("fashion_mnist", "test_images"): (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                       None),
    ("fashion_mnist", "test_labels"): (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                       "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ("kmnist", "train_images"): (18165135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", None),
    ("kmnist", "train_labels"): (29497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", None),
    ("kmnist", "test_images"): (3041136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", None),
    ("kmnist", "test_labels"): (5120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", None),
}


def test_every_dataset_is_there():
    assert set(DATASETS) == {"mnist", "fashion_mnist", "kmnist"} | {f"emnist_{s}" for s in EMNIST_SPLITS}
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert tuple(spec.files) == ROLES
        assert spec.image_shape == (28, 28)


@pytest.mark.parametrize("key", sorted(OFFICIAL))
def test_official_hashes_and_sizes(key):
    name, role = key
    size, sha, content = OFFICIAL[key]
    file = DATASETS[name].files[role]
    assert (file.size, file.sha256, file.content_sha256) == (size, sha, content)


def test_file_names_and_mirror_order():
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    bases = {
        "mnist": ["https://storage.googleapis.com/cvdf-datasets/mnist/",
                  "https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                          "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"],
        "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    }
    for dataset, mirrors in bases.items():
        spec = DATASETS[dataset]
        assert [f.name for f in spec.files.values()] == names
        for file in spec.files.values():
            assert file.urls == tuple(base + file.name for base in mirrors)
        assert spec.archive is None and not spec.transposed and spec.splits == {"train": 60000, "test": 10000}


def test_emnist_specs():
    for split, (train, test, classes) in EMNIST_SPLITS.items():
        spec = DATASETS[f"emnist_{split}"]
        assert spec.transposed and spec.dir_name == "emnist"
        assert spec.splits == {"train": train, "test": test}
        assert spec.num_classes == classes
        assert spec.archive.name == "gzip.zip"
        assert spec.archive.size == 561753746
        assert spec.archive.sha256 == "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e"
        assert spec.archive.urls == ("https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip",
                                     "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip")
        assert [f.name for f in spec.files.values()] == [
            f"emnist-{split}-train-images-idx3-ubyte.gz", f"emnist-{split}-train-labels-idx1-ubyte.gz",
            f"emnist-{split}-test-images-idx3-ubyte.gz", f"emnist-{split}-test-labels-idx1-ubyte.gz"]
        for file in spec.files.values():
            assert file.urls == () and file.sha256 is None  # they come out of the verified archive


def test_class_names():
    assert DATASETS["mnist"].class_names == tuple("0123456789")
    assert DATASETS["fashion_mnist"].class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert DATASETS["kmnist"].class_names == tuple("おきすつなはまやれを")
    byclass = DATASETS["emnist_byclass"].class_names
    assert "".join(byclass) == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    balanced = DATASETS["emnist_balanced"].class_names
    assert "".join(balanced) == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
    assert DATASETS["emnist_bymerge"].class_names == balanced
    assert DATASETS["emnist_digits"].class_names == DATASETS["emnist_mnist"].class_names == tuple("0123456789")


def test_emnist_letters_labels_start_at_1():
    letters = DATASETS["emnist_letters"]
    assert letters.first_label == 1 and letters.num_classes == 26
    # class_names[label] works for every label 1..26; index 0 is a placeholder no label uses.
    assert letters.class_names[0] == "N/A"
    assert letters.class_names[1] == "a" and letters.class_names[26] == "z"
    for name, spec in DATASETS.items():
        if name != "emnist_letters":
            assert spec.first_label == 0 and spec.num_classes == len(spec.class_names)


def test_decoded_sizes_match_the_readme():
    mnist = DATASETS["mnist"]
    assert [mnist.decoded_size(r) for r in ROLES] == [47040016, 60008, 7840016, 10008]


def test_keras_npz_pin():
    npz = DATASETS["mnist"].keras_npz
    assert npz.name == "mnist.npz"
    assert npz.sha256 == "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    assert all(DATASETS[n].keras_npz is None for n in DATASETS if n != "mnist")


def test_get():
    assert registry.get("mnist") is DATASETS["mnist"]
    assert registry.get("Fashion-MNIST") is DATASETS["fashion_mnist"]
    with pytest.raises(ValueError) as info:
        registry.get("cifar10")
    message = str(info.value)
    assert "cifar10" in message
    assert all(name in message for name in DATASETS)
    with pytest.raises(TypeError):
        registry.get(None)


def test_hashes_are_well_formed():
    for spec in DATASETS.values():
        for file in [*spec.files.values(), spec.archive, spec.keras_npz]:
            if file is None:
                continue
            for value in (file.sha256, file.content_sha256):
                assert value is None or re.fullmatch("[0-9a-f]{64}", value)
            assert all(url.startswith(("http://", "https://")) and url.endswith("/" + file.name) for url in file.urls)


def test_specs_are_immutable_and_validated():
    file = DATASETS["mnist"].files["train_images"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        file.sha256 = "0" * 64
    with pytest.raises(ValueError, match="64 lowercase hex"):
        FileSpec("x.gz", 1, "ABC", None, ())
    with pytest.raises(ValueError, match="plain file name"):
        FileSpec("../x.gz", 1, None, None, ())
    with pytest.raises(TypeError):
        FileSpec("x.gz", 1, None, None, "http://example.invalid/x.gz")
    with pytest.raises(ValueError, match="roles"):
        dataclasses.replace(DATASETS["mnist"], files={"train_images": file})
    assert isinstance(DATASETS["mnist"], DatasetSpec)


def test_doctests():
    assert doctest.testmod(registry, raise_on_error=False).failed == 0
