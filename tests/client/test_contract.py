"""The contract module: signature and tensor names, and which folders are versions.

Fast: no TensorFlow, no server. That the exported SignatureDefs carry exactly these names is
checked where a model is exported (the training tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client import contract


@pytest.mark.parametrize("name", ["0", "1", "3", "42", "007", "1700000000"])
def test_ascii_digit_names_are_versions(name):
    assert contract.is_version_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "²",  # superscript two: str.isdigit() says True, int() refuses it
        "٣",  # Arabic-Indic three: int() would read it as 3, TF Serving does not
        "３",  # fullwidth three
        "3.rolled-back",
        "3a",
        "-1",
        "+1",
        " 3",
        "3 ",
        "3\n",
        "1_000",
        "v3",
        ".3",
    ],
)
def test_other_names_are_not_versions(name):
    assert not contract.is_version_name(name)


def test_version_folders_keeps_ascii_digit_folders_sorted_by_number(tmp_path):
    for name in ("10", "2", "1", "007", "²", "٣", "3.rolled-back", "tmp", ".3"):
        (tmp_path / name).mkdir()
    (tmp_path / "4").write_text("a file, not a version folder")
    (tmp_path / "export.json").write_text("{}")

    versions = contract.version_folders(tmp_path)

    assert list(versions) == [1, 2, 7, 10]
    assert versions == {
        1: tmp_path / "1",
        2: tmp_path / "2",
        7: tmp_path / "007",
        10: tmp_path / "10",
    }
    assert all(isinstance(path, Path) for path in versions.values())


def test_version_folders_accepts_a_string_path(tmp_path):
    (tmp_path / "5").mkdir()
    assert contract.version_folders(str(tmp_path)) == {5: tmp_path / "5"}


def test_version_folders_of_a_missing_or_empty_model_is_empty(tmp_path):
    assert contract.version_folders(tmp_path / "missing") == {}
    assert contract.version_folders(tmp_path) == {}
    (tmp_path / "not-a-folder").write_text("")
    assert contract.version_folders(tmp_path / "not-a-folder") == {}


def test_the_three_signatures_with_their_input_and_output_names():
    assert contract.SIGNATURES == {
        "serving_default": contract.SEGMENT,
        "segment_jpeg": contract.SEGMENT_JPEG,
        "metadata": contract.METADATA,
    }
    assert contract.SEGMENT.inputs == ("images", "output_size")
    assert contract.SEGMENT.outputs == ("class_map", "confidence")
    assert contract.SEGMENT_JPEG.inputs == ("jpeg", "output_size")
    assert contract.SEGMENT_JPEG.outputs == ("class_map", "confidence")
    assert contract.METADATA.inputs == ("request",)
    # Optional inputs have a recorded default: a request may leave them out.
    assert contract.SEGMENT.optional == contract.SEGMENT_JPEG.optional == ("output_size",)
    assert contract.METADATA.optional == ("request",)
    assert set(contract.INPUT_DEFAULTS) == {"output_size", "request"}
    assert contract.METADATA.outputs == ("class_names", "palette", "input_size", "output_stride")


def test_tensor_name_constants_are_the_signatures_names():
    assert (contract.IMAGES, contract.JPEG, contract.METADATA_REQUEST) == (
        "images",
        "jpeg",
        "request",
    )
    assert (contract.CLASS_MAP, contract.CONFIDENCE) == ("class_map", "confidence")
    assert (
        contract.CLASS_NAMES,
        contract.PALETTE,
        contract.INPUT_SIZE,
        contract.OUTPUT_STRIDE,
    ) == ("class_names", "palette", "input_size", "output_stride")


def test_signatures_are_frozen():
    with pytest.raises(AttributeError):
        contract.SEGMENT.name = "other"  # type: ignore[misc]


def test_names_and_ports_of_the_design():
    assert contract.DEFAULT_MODEL_NAME == "deeplabv3"
    assert (contract.GRPC_PORT, contract.REST_PORT, contract.GATEWAY_PORT) == (8500, 8501, 8000)
    assert str(contract.EXPORT_INFO_PATH) == "assets.extra/export.json"
    assert str(contract.WARMUP_PATH) == "assets.extra/tf_serving_warmup_requests"
