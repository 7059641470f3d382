import dataclasses

import numpy as np
import pytest

from client.navigation import DrivingPolicy, free_space, obstacle_mask, steering_hint

PERSON, CAR = 15, 7
H, W = 20, 30


def _person_ahead() -> np.ndarray:
    """A person in rows 5..9, columns 12..17 of a 20×30 frame; the rest is background."""
    class_map = np.zeros((H, W), np.uint8)
    class_map[5:10, 12:18] = PERSON
    return class_map


def _blocked_columns(free: np.ndarray) -> list[int]:
    return np.flatnonzero(free < H).tolist()


def test_person_in_the_middle_blocks_its_columns_at_its_feet():
    policy = DrivingPolicy.voc(risk="adventurous", margin_px=0)
    free = free_space(obstacle_mask(_person_ahead(), policy))
    assert _blocked_columns(free) == list(range(12, 18))
    # Feet on row 9: rows 10..19 below it are free.
    assert (free[12:18] == H - 10).all()
    assert free.shape == (W,) and np.issubdtype(free.dtype, np.integer)


def test_margin_widens_the_blocked_region_by_the_margin():
    policy = DrivingPolicy.voc(risk="adventurous", margin_px=3)
    free = free_space(obstacle_mask(_person_ahead(), policy))
    assert _blocked_columns(free) == list(range(12 - 3, 18 + 3))
    assert (free[12:18] == H - 10 - 3).all()


def test_safe_doubles_the_margin():
    policy = DrivingPolicy.voc(risk="safe", margin_px=3)
    assert policy.effective_margin == 6
    free = free_space(obstacle_mask(_person_ahead(), policy))
    assert _blocked_columns(free) == list(range(12 - 6, 18 + 6))
    assert (free[12:18] == H - 10 - 6).all()


def test_margin_kernel_is_round_not_square():
    class_map = np.zeros((11, 11), np.uint8)
    class_map[5, 5] = PERSON
    mask = obstacle_mask(class_map, DrivingPolicy.voc(risk="adventurous", margin_px=3))
    assert mask[5, 2] and mask[5, 8] and mask[2, 5] and mask[8, 5]
    assert not mask[2, 2] and not mask[8, 8], "a square kernel would block the corners"
    assert not mask[5, 1] and not mask[1, 5]


def test_only_the_chosen_classes_are_obstacles():
    class_map = _person_ahead()
    class_map[15:17, 0:3] = CAR
    cars_only = DrivingPolicy(frozenset({CAR}), margin_px=0, risk="adventurous")
    np.testing.assert_array_equal(obstacle_mask(class_map, cars_only), class_map == CAR)


def _low_confidence_scene() -> tuple[np.ndarray, np.ndarray]:
    """A sure person, an unsure person and an unsure patch of background."""
    class_map = np.zeros((H, W), np.uint8)
    confidence = np.full((H, W), 250, np.uint8)
    class_map[2:6, 2:6] = PERSON  # sure
    class_map[2:6, 10:14] = PERSON
    confidence[2:6, 10:14] = 60  # unsure person
    confidence[2:6, 20:24] = 60  # unsure background
    return class_map, confidence


def test_safe_treats_low_confidence_pixels_as_obstacles_whatever_their_class():
    class_map, confidence = _low_confidence_scene()
    mask = obstacle_mask(class_map, DrivingPolicy.voc(risk="safe", margin_px=0), confidence)
    np.testing.assert_array_equal(mask, (class_map == PERSON) | (confidence < 128))
    assert mask[2:6, 20:24].all()


def test_adventurous_keeps_only_confident_obstacles():
    class_map, confidence = _low_confidence_scene()
    mask = obstacle_mask(class_map, DrivingPolicy.voc(risk="adventurous", margin_px=0), confidence)
    expected = np.zeros((H, W), bool)
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(mask, expected)


def test_without_confidence_both_preferences_use_the_class_map():
    class_map, _ = _low_confidence_scene()
    for risk in ("safe", "adventurous"):
        mask = obstacle_mask(class_map, DrivingPolicy.voc(risk=risk, margin_px=0))
        np.testing.assert_array_equal(mask, class_map == PERSON)


def test_min_confidence_is_inclusive():
    class_map = np.full((1, 2), PERSON, np.uint8)
    confidence = np.array([[128, 127]], np.uint8)
    adventurous = DrivingPolicy.voc(risk="adventurous", margin_px=0, min_confidence=128)
    assert obstacle_mask(class_map, adventurous, confidence).tolist() == [[True, False]]
    background = np.zeros((1, 2), np.uint8)
    safe = DrivingPolicy.voc(risk="safe", margin_px=0, min_confidence=128)
    assert obstacle_mask(background, safe, confidence).tolist() == [[False, True]]


def test_free_space_of_an_empty_map_is_the_full_height():
    free = free_space(np.zeros((H, W), bool))
    assert free.tolist() == [H] * W


def test_free_space_counts_rows_from_the_bottom():
    obstacles = np.zeros((5, 4), bool)
    obstacles[4, 0] = True  # bottom row: nothing free
    obstacles[0, 1] = True  # top row: all rows below are free
    obstacles[[1, 3], 2] = True  # the lower obstacle is the one that counts
    assert free_space(obstacles).tolist() == [0, 4, 1, 5]


def test_voc_policy_defaults():
    policy = DrivingPolicy.voc()
    assert policy.obstacle_classes == frozenset(range(1, 21))
    assert (policy.risk, policy.margin_px, policy.min_confidence) == ("safe", 8, 128)
    assert policy.effective_margin == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.margin_px = 0  # type: ignore[misc]


def test_policy_accepts_any_iterable_of_classes_and_stays_hashable():
    policy = DrivingPolicy({PERSON, CAR})  # type: ignore[arg-type]
    assert isinstance(policy.obstacle_classes, frozenset)
    assert hash(policy) == hash(DrivingPolicy(frozenset({CAR, PERSON})))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"risk": "reckless"}, "'safe' or 'adventurous', got 'reckless'"),
        ({"margin_px": -1}, ">= 0, got -1"),
        ({"min_confidence": 256}, r"\[0, 255\], got 256"),
    ],
)
def test_policy_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DrivingPolicy(frozenset({PERSON}), **kwargs)


@pytest.mark.parametrize(
    ("class_map", "confidence", "message"),
    [
        (np.zeros((2, 3, 1), np.uint8), None, r"H×W integer.*\(2, 3, 1\)"),
        (np.zeros((2, 3), np.float32), None, "integer.*float32"),
        (np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), r"\(2, 3\).*\(3, 2\)"),
        (np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.float32), "uint8.*float32"),
    ],
)
def test_obstacle_mask_rejects_bad_inputs(class_map, confidence, message):
    with pytest.raises(ValueError, match=message):
        obstacle_mask(class_map, DrivingPolicy.voc(), confidence)


def test_free_space_rejects_non_masks():
    with pytest.raises(ValueError, match=r"bool mask, got uint8 \(2, 2\)"):
        free_space(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        free_space(np.zeros(2, bool))


def test_steering_hint_prefers_a_wide_gap_over_a_narrow_spike():
    free = np.array([15, 15, 15, 15, 15, 0, 0, 0, 0, 20, 0, 0])
    assert steering_hint(free, window=1) == 9  # the spike alone
    assert steering_hint(free, window=5) == 2  # the middle of the wide gap


def test_steering_hint_ties_go_straight_ahead():
    assert steering_hint(np.full(9, 7), window=3) == 4
    assert steering_hint(np.array([5, 0, 0, 0, 5]), window=1) == 0  # equal distance: first


def test_steering_hint_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        steering_hint(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="window >= 1"):
        steering_hint(np.ones(3), window=0)


def test_a_policy_by_name_from_the_models_metadata():
    from client.results import ModelMetadata

    names = ("background", "floor", "wall", "furniture", "person", "pet", "clutter")
    metadata = ModelMetadata(names, np.zeros((7, 3), np.uint8), (64, 64), 16, 1)
    drive_on_floor = DrivingPolicy.from_metadata(metadata, traversable=["floor"], margin_px=0)
    assert drive_on_floor.obstacle_classes == {0, 2, 3, 4, 5, 6}
    only_living = DrivingPolicy.from_metadata(metadata, obstacles=["person", "pet"])
    assert only_living.obstacle_classes == {4, 5}
    class_map = np.ones((4, 3), np.uint8)  # floor everywhere
    class_map[0:2, 1] = names.index("pet")
    assert free_space(obstacle_mask(class_map, drive_on_floor)).tolist() == [4, 2, 4]
    with pytest.raises(ValueError, match=r"no class 'sofa'; its classes: background, floor"):
        DrivingPolicy.from_metadata(metadata, traversable=["floor", "sofa"])
    with pytest.raises(ValueError, match="either traversable= or obstacles="):
        DrivingPolicy.from_metadata(metadata, traversable=["floor"], obstacles=["pet"])
