"""The result types, built from decoded outputs without a server."""

from __future__ import annotations

import numpy as np
import pytest

from client import contract
from client.errors import InvalidResponse
from client.results import ModelMetadata, StageTimings


def metadata_outputs() -> dict[str, np.ndarray]:
    return {
        contract.CLASS_NAMES: np.array([[b"background", b"road", b"person"]], object),
        contract.PALETTE: np.array([[[0, 0, 0], [128, 64, 128], [192, 128, 128]]], np.uint8),
        contract.INPUT_SIZE: np.array([[384, 512]], np.int32),
        contract.OUTPUT_STRIDE: np.array([8], np.int32),
    }


def test_model_metadata_reads_row_zero_of_the_metadata_outputs():
    metadata = ModelMetadata.from_outputs(metadata_outputs(), model_version=4)
    assert metadata.class_names == ("background", "road", "person")
    assert metadata.palette.dtype == np.uint8 and metadata.palette.shape == (3, 3)
    assert metadata.palette[2].tolist() == [192, 128, 128]
    assert metadata.input_size == (384, 512) and metadata.output_stride == 8
    assert metadata.model_version == 4


@pytest.mark.parametrize("missing", contract.METADATA.outputs)
def test_a_missing_metadata_output_is_an_invalid_response_naming_it(missing):
    outputs = metadata_outputs()
    del outputs[missing]
    with pytest.raises(InvalidResponse, match=rf"metadata signature of 'roads' lacks '{missing}'"):
        ModelMetadata.from_outputs(outputs, model_version=1, model="roads")


def test_an_empty_metadata_answer_is_an_invalid_response():
    outputs = {name: value[:0] for name, value in metadata_outputs().items()}
    with pytest.raises(InvalidResponse, match="metadata signature lacks"):
        ModelMetadata.from_outputs(outputs, model_version=1)


def test_stage_timings_total():
    assert StageTimings(encode=0.25, rpc=0.5, decode=0.125).total == 0.875


def test_result_types_are_still_importable_from_the_client_module():
    from client import results, segmentation_client

    for name in ("ModelMetadata", "Segmentation", "StageTimings", "VersionStatus"):
        assert getattr(segmentation_client, name) is getattr(results, name)
