"""The built-in transforms, each against an independent reference computation.

References are written here from the definitions (hand-built kernels with
numpy padding, brute-force loops, scikit-image, ``scipy.ndimage.affine_transform``,
FFT convolution), not by calling the code under test. The last tests run
every built-in at its defaults over the demo plate through the real CLI.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from napari_process_position.core.errors import TransformParameterError
from napari_process_position.store.demo import synthetic_position
from napari_process_position.transforms import builtins as B
from napari_process_position.transforms import get_transform, list_transforms, region_with_margin

BUILTIN_NAMES = [spec.name for spec in list_transforms() if spec.source == "built-in"]


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    """One demo time point, CZYX uint16 (2, 16, 128, 128)."""
    return synthetic_position(seed=3)[1]


def random_volume(shape, dtype="float64", seed=0, low=0, high=1000):
    rng = np.random.default_rng(seed)
    values = rng.uniform(low, high, size=shape)
    if np.dtype(dtype).kind in "ui":
        return np.rint(values).astype(dtype)
    return values.astype(dtype)


# -- reference helpers (written from the definitions) ---------------------------------------


def ref_gaussian_1d(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Convolve along ``axis``: Gaussian cut at 4 sigma, mirrored edges (d c b a | a b c d)."""
    if sigma == 0:
        return a
    radius = int(4 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    moved = np.moveaxis(a.astype(np.float64), axis, -1)
    padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(radius, radius)], mode="symmetric")
    out = sliding_window_view(padded, 2 * radius + 1, axis=-1) @ kernel[::-1]
    return np.moveaxis(out, -1, axis)


def ref_gaussian(a: np.ndarray, sigmas) -> np.ndarray:
    out = a.astype(np.float64)
    for axis, sigma in enumerate(sigmas):
        out = ref_gaussian_1d(out, sigma, axis)
    return out


def round_to(values: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(dtype)


def assert_int_close(got: np.ndarray, reference: np.ndarray, dtype) -> None:
    """Integer output vs a float64 reference: equal after rounding, but for x.5 ties."""
    assert got.dtype == np.dtype(dtype)
    expected = round_to(reference, dtype)
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3  # only float32 round-off at .5 boundaries


# -- Gaussian blur -----------------------------------------------------------------------------


@pytest.mark.parametrize("sigmas", [(1.0, 2.0, 2.0), (0.0, 1.3, 0.7), (2.5, 0.0, 3.0)])
def test_gaussian_blur_matches_separable_reference(sigmas):
    vol = random_volume((9, 31, 26), seed=1)
    got = B.gaussian_blur(vol, *sigmas)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref_gaussian(vol, sigmas), rtol=1e-12, atol=1e-9)


def test_gaussian_blur_integer_input_rounds_once(demo):
    got = B.gaussian_blur(demo)
    assert got.shape == demo.shape
    for c in range(demo.shape[0]):
        assert_int_close(got[c], ref_gaussian(demo[c], (1.0, 2.0, 2.0)), np.uint16)


# -- median -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size_z, size_yx", [(1, 3), (3, 3), (3, 5), (1, 1)])
def test_median_filter_matches_window_reference(size_z, size_yx):
    vol = random_volume((7, 19, 23), dtype="uint16", seed=2)
    size = (size_z, size_yx, size_yx)
    pad = [(s // 2, s - 1 - s // 2) for s in size]
    windows = sliding_window_view(np.pad(vol, pad, mode="symmetric"), size)
    expected = np.median(windows, axis=(-3, -2, -1))
    got = B.median_filter(vol, size_z=size_z, size_yx=size_yx)
    assert got.dtype == vol.dtype
    np.testing.assert_array_equal(got, expected.astype(vol.dtype))


def test_median_filter_removes_salt_and_pepper():
    rng = np.random.default_rng(5)
    clean = np.full((4, 64, 64), 500, np.uint16)
    noisy = clean.copy()
    spots = rng.random(clean.shape) < 0.02
    noisy[spots] = 60000
    got = B.median_filter(noisy)
    assert (got != clean).mean() < 0.001 < (noisy != clean).mean()


# -- background subtraction ------------------------------------------------------------------


def ball(radius):
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = dy * dy + dx * dx <= radius * radius
    height = np.sqrt(np.clip(radius * radius - dy * dy - dx * dx, 0, None))
    return inside, np.where(inside, height, 0.0)


def ref_rolling_ball_background(plane: np.ndarray, radius: int) -> np.ndarray:
    """Grey opening by a ball: scikit-image's ball erosion, then scipy's grey dilation."""
    from scipy import ndimage

    inside, height = ball(radius)
    try:
        from skimage.restoration import rolling_ball

        # scikit-image returns the ball's apex, i.e. the erosion plus the radius.
        centres = rolling_ball(plane.astype(np.float64), radius=radius) - radius
    except ImportError:  # pragma: no cover - scikit-image comes with napari
        centres = ndimage.grey_erosion(
            plane.astype(np.float64),
            structure=height,
            footprint=inside,
            mode="constant",
            cval=np.inf,
        )
    return ndimage.grey_dilation(
        centres, structure=height, footprint=inside, mode="constant", cval=-np.inf
    )


def ref_flat_opening(plane: np.ndarray, radius: int) -> np.ndarray:
    """Brute force: min, then max, over every disk offset; pixels outside are ignored."""
    inside, _ = ball(radius)
    offsets = np.argwhere(inside) - radius
    big = np.iinfo(plane.dtype).max if plane.dtype.kind in "ui" else np.inf
    small = np.iinfo(plane.dtype).min if plane.dtype.kind in "ui" else -np.inf
    n_y, n_x = plane.shape

    def sweep(img, fill, op):
        padded = np.pad(img, radius, constant_values=fill)
        views = [
            padded[radius + dy : radius + dy + n_y, radius + dx : radius + dx + n_x]
            for dy, dx in offsets
        ]
        return functools.reduce(op, views)

    return sweep(sweep(plane, big, np.minimum), small, np.maximum)


@pytest.mark.parametrize("radius", [3, 7])
def test_rolling_ball_matches_erosion_then_dilation(radius):
    vol = random_volume((3, 40, 33), seed=4, low=100, high=140)
    got = B.subtract_background(vol, radius=radius, method="rolling_ball")
    expected = np.stack([np.maximum(p - ref_rolling_ball_background(p, radius), 0) for p in vol])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    assert (got >= 0).all()


def test_rolling_ball_integer_input(demo):
    plane = demo[0, 8:10]
    got = B.subtract_background(plane, radius=9)
    expected = np.stack([p - ref_rolling_ball_background(p, 9) for p in plane])
    assert_int_close(got, expected, np.uint16)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_tophat_matches_brute_force_opening(dtype):
    vol = random_volume((2, 37, 41), dtype=dtype, seed=6)
    got = B.subtract_background(vol, radius=6, method="tophat")
    expected = np.stack([p - ref_flat_opening(p, 6) for p in vol])
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


def test_tophat_matches_scikit_image():
    morphology = pytest.importorskip("skimage.morphology")
    vol = random_volume((2, 30, 28), dtype="uint16", seed=7)
    expected = np.stack([p - morphology.opening(p, morphology.disk(5), mode="ignore") for p in vol])
    np.testing.assert_array_equal(B.subtract_background(vol, radius=5, method="tophat"), expected)


@pytest.mark.parametrize("method", ["rolling_ball", "tophat"])
def test_background_subtraction_flattens_demo_background(demo, method):
    got = B.subtract_background(demo, method=method).astype(np.float64)
    raw = demo.astype(np.float64)
    # The demo background (100-140 plus noise) is mostly removed; the bright cells stay.
    assert np.median(got) < 0.3 * np.median(raw)
    assert got.max() > 0.6 * (raw.max() - np.median(raw))


# -- flat-field ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma, dark", [(32.0, 0.0), (5.0, 20.0)])
def test_flat_field_matches_reference(sigma, dark):
    vol = random_volume((5, 48, 40), dtype="uint16", seed=8, low=100, high=900)
    x = vol.astype(np.float64) - dark
    profile = ref_gaussian(x.mean(axis=0), (sigma, sigma))
    expected = x / (profile / profile.mean())
    got = B.flat_field(vol, sigma=sigma, dark=dark)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_flat_field_removes_an_illumination_gradient():
    y, x = np.mgrid[0:96, 0:96]
    illumination = 0.5 + (x + y) / 190.0
    rng = np.random.default_rng(9)
    vol = (rng.normal(1000, 5, (6, 96, 96)) * illumination).astype(np.float32)
    got = B.flat_field(vol, sigma=10.0)
    assert np.std(got) / np.mean(got) < 0.25 * np.std(vol) / np.mean(vol)
    assert math.isclose(float(got.mean()), float(vol.mean()), rel_tol=0.02)


def test_flat_field_rejects_a_dark_offset_above_the_signal():
    with pytest.raises(ValueError, match="dark offset"):
        B.flat_field(np.full((2, 8, 8), 50, np.uint16), dark=100.0)


# -- deconvolution ---------------------------------------------------------------------------


def ref_richardson_lucy(image: np.ndarray, sigmas, iterations: int) -> np.ndarray:
    """RL in float64 with FFT convolution of mirrored-padded volumes by the explicit 3-D PSF."""
    from scipy.signal import fftconvolve

    radii = [int(4 * s + 0.5) for s in sigmas]
    kernels = []
    for s, r in zip(sigmas, radii, strict=True):
        x = np.arange(-r, r + 1)
        k = np.exp(-0.5 * (x / s) ** 2) if s > 0 else (x == 0).astype(float)
        kernels.append(k / k.sum())
    psf = kernels[0][:, None, None] * kernels[1][None, :, None] * kernels[2][None, None, :]

    def blur(a):
        padded = np.pad(a, [(r, r) for r in radii], mode="symmetric")
        return fftconvolve(padded, psf, mode="valid")

    observed = np.maximum(image.astype(np.float64), 0)
    estimate = observed.copy()
    for _ in range(iterations):
        estimate = estimate * blur(observed / np.maximum(blur(estimate), 1e-12))
    return estimate


def test_richardson_lucy_matches_fft_reference():
    vol = random_volume((10, 24, 22), seed=10, low=50, high=500)
    got = B.richardson_lucy(vol, iterations=4, psf_sigma_z=1.5, psf_sigma_y=1.0, psf_sigma_x=0.8)
    expected = ref_richardson_lucy(vol, (1.5, 1.0, 0.8), 4)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_richardson_lucy_sharpens_blurred_points():
    truth = np.zeros((16, 48, 48))
    truth[8, 12, 12] = truth[6, 30, 35] = truth[10, 36, 14] = 1000.0
    truth += 10
    sigmas = (1.5, 1.0, 1.0)
    blurred = ref_gaussian(truth, sigmas)
    got = B.richardson_lucy(
        blurred, iterations=30, psf_sigma_z=1.5, psf_sigma_y=1.0, psf_sigma_x=1.0
    )
    assert got[8, 12, 12] > 3 * blurred[8, 12, 12]
    assert np.linalg.norm(got - truth) < 0.9 * np.linalg.norm(blurred - truth)
    assert math.isclose(float(got.sum()), float(truth.sum()), rel_tol=1e-3)  # flux is kept


# -- binning and projections -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize("method", ["mean", "sum"])
def test_binning_matches_loop_reference(dtype, method):
    vol = random_volume((5, 7, 9), dtype=dtype, seed=11)
    fz, fy, fx = 2, 3, 2
    shape = (5 // fz, 7 // fy, 9 // fx)
    expected = np.zeros(shape)
    for z in range(shape[0]):
        for y in range(shape[1]):
            for x in range(shape[2]):
                block = [
                    float(vol[z * fz + i, y * fy + j, x * fx + k])
                    for i in range(fz)
                    for j in range(fy)
                    for k in range(fx)
                ]
                expected[z, y, x] = sum(block) if method == "sum" else sum(block) / len(block)
    got = B.binning(vol, bin_z=fz, bin_y=fy, bin_x=fx, method=method)
    assert got.shape == shape
    if method == "sum":
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    elif dtype == "uint16":
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, round_to(expected, np.uint16))
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_binning_too_large_is_a_clear_error():
    with pytest.raises(ValueError, match="larger than the volume"):
        B.binning(np.ones((2, 4, 4)), bin_y=8)


def test_projections_match_plane_by_plane_reference(demo):
    planes = [demo[:, z] for z in range(demo.shape[1])]
    expected_max = functools.reduce(np.maximum, planes)[:, None]
    np.testing.assert_array_equal(B.max_projection(demo), expected_max)
    total = np.zeros(planes[0].shape)
    for p in planes:
        total += p
    got = B.mean_projection(demo)
    assert got.dtype == np.float32 and got.shape == (2, 1, 128, 128)
    np.testing.assert_allclose(got, (total / len(planes))[:, None], rtol=1e-6)


# -- intensity -------------------------------------------------------------------------------


def ref_percentile(values: np.ndarray, q: float) -> float:
    """Linear interpolation between the sorted values (numpy's default definition)."""
    ordered = np.sort(values, axis=None).astype(np.float64)
    position = q / 100 * (ordered.size - 1)
    low = math.floor(position)
    high = min(low + 1, ordered.size - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@pytest.mark.parametrize("dtype_out", ["float32", "uint8", "uint16"])
def test_rescale_intensity_matches_reference(demo, dtype_out):
    got = B.rescale_intensity(demo, low_percentile=1.0, high_percentile=99.0, dtype_out=dtype_out)
    assert got.dtype == np.dtype(dtype_out) and got.shape == demo.shape
    top = 1.0 if dtype_out == "float32" else float(np.iinfo(dtype_out).max)
    for c in range(demo.shape[0]):
        low, high = ref_percentile(demo[c], 1.0), ref_percentile(demo[c], 99.0)
        expected = np.clip((demo[c] - low) / (high - low) * top, 0, top)
        if dtype_out == "float32":
            np.testing.assert_allclose(got[c], expected, atol=1e-5)
        else:
            assert_int_close(got[c], expected, dtype_out)


def test_rescale_intensity_rejects_crossed_percentiles():
    with pytest.raises(ValueError, match="low < high"):
        B.rescale_intensity(np.ones((2, 2, 2)), low_percentile=60, high_percentile=40)


def test_convert_dtype_clips_and_rounds():
    vol = np.array([[[-3.0, 0.4, 0.6, 254.5, 300.0]]])
    got = B.convert_dtype(vol, dtype_out="uint8", scale=1.0, offset=0.0)
    assert got.dtype == np.uint8
    assert got.tolist() == [[[0, 0, 1, 254, 255]]]  # round half to even, clip to 0..255
    ints = np.array([[[1, 2]]], np.uint16)
    got = B.convert_dtype(ints, dtype_out="float32", scale=2.5, offset=-1)
    assert got.dtype == np.float32 and got.tolist() == [[[1.5, 4.0]]]


def test_soft_magnitude_reference(demo):
    got = B.soft_magnitude(demo, offset=0.25)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.sqrt(demo.astype(np.float64) ** 2 + 1) - 0.25, rtol=1e-6)


# -- deskew ----------------------------------------------------------------------------------


def deskew_reference(raw: np.ndarray, angle: float, ratio: float, keep_overhang: bool):
    """Output size by geometry, values by ``scipy.ndimage.affine_transform`` (linear)."""
    from scipy import ndimage

    n_scan, n_rows, n_cols = raw.shape
    cos = math.cos(math.radians(angle))
    shear = (n_rows - 1) * cos
    length = (n_scan - 1) / ratio
    if keep_overhang:
        start, stop = min(0.0, shear), length + max(0.0, shear)
    else:
        start, stop = max(0.0, shear), length + min(0.0, shear)
    count = math.floor(stop - start + 1e-9) + 1
    # output (height y, scan u, column x) <- input (step (u + start - y cos) * ratio, y, x)
    matrix = np.array([[-ratio * cos, ratio, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = ndimage.affine_transform(
        raw.astype(np.float64),
        matrix,
        offset=[ratio * start, 0, 0],
        output_shape=(n_rows, count, n_cols),
        order=1,
        mode="constant",
        cval=0.0,
    )
    y, u = np.mgrid[0:n_rows, 0:count]
    step = (u + start - y * cos) * ratio
    # Samples within rounding of the first or last scan step are ambiguous for the reference.
    ambiguous = (np.abs(step) < 1e-7) | (np.abs(step - (n_scan - 1)) < 1e-7)
    return out, ambiguous


@pytest.mark.parametrize(
    "angle, ratio, keep",
    [
        (30.0, 0.4, True),
        (30.0, 0.5, False),
        (150.0, 0.5, True),
        (150.0, 0.8, False),
        (60.0, 1.7, True),
        (45.0, 0.3, True),
        (90.0, 1.0, False),
    ],
)
def test_deskew_matches_affine_transform(angle, ratio, keep):
    raw = random_volume((24, 12, 7), seed=12, low=100, high=200)
    got = B.deskew(raw, scan_angle=angle, px_to_scan_ratio=ratio, keep_overhang=keep)
    expected, ambiguous = deskew_reference(raw, angle, ratio, keep)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got[~ambiguous], expected[~ambiguous], atol=1e-9)


def test_deskew_integer_demo_volume(demo):
    got = B.deskew(demo)
    expected, ambiguous = deskew_reference(demo[1], 30.0, 0.4, True)
    assert got.shape == (2, *expected.shape) and got.dtype == np.uint16
    assert_int_close(got[1][~ambiguous], expected[~ambiguous], np.uint16)


def test_deskew_without_overhang_needs_a_long_enough_scan():
    with pytest.raises(ValueError, match="keep_overhang=True"):
        B.deskew(np.ones((4, 64, 8)), scan_angle=30, px_to_scan_ratio=0.5, keep_overhang=False)


def test_deskew_metadata_matches_output():
    spec = get_transform("deskew")
    params = spec.check_params({"scan_angle": 40.0, "px_to_scan_ratio": 0.7})
    raw = random_volume((20, 16, 5), seed=13)
    out = spec.func(raw, **params)
    assert spec.meta.output_zyx_shape((20, 16, 5), **params) == out.shape
    scale = spec.meta.output_scale((2.0, 0.5, 0.4), **params)
    assert scale == pytest.approx((0.5 * math.sin(math.radians(40)), 0.5, 0.4))


# -- every built-in ------------------------------------------------------------------------


def test_builtin_set_is_complete():
    expected = {
        "gaussian_blur",
        "median_filter",
        "subtract_background",
        "flat_field",
        "richardson_lucy",
        "binning",
        "max_projection",
        "mean_projection",
        "deskew",
        "rescale_intensity",
        "convert_dtype",
        "soft_magnitude",
    }
    assert expected <= set(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_zyx_and_czyx_agree_and_metadata_matches(name, demo):
    """ZYX and CZYX give the same volumes, and the declared shape/dtype are what comes out."""
    spec = get_transform(name)
    params = spec.check_params({})
    small = demo[:, :8, :64, :48]
    both = spec.func(small, **params)
    assert both.ndim == 4 and both.shape[0] == 2
    for c in range(2):
        one = spec.func(small[c], **params)
        assert one.ndim == 3
        np.testing.assert_array_equal(one, both[c])
    meta = spec.meta
    if meta.output_zyx_shape is not None:
        assert tuple(meta.output_zyx_shape(small.shape[1:], **params)) == both.shape[1:]
    else:
        assert meta.same_shape and both.shape == small.shape
    expected_dtype = meta.output_dtype(small.dtype, **params) if meta.output_dtype else small.dtype
    assert both.dtype == expected_dtype
    assert spec.summary and spec.display_name != spec.name
    assert set(spec.parameter_help()) == {p.name for p in spec.parameters()}


MARGIN_CASES = [
    ("gaussian_blur", {}),
    ("gaussian_blur", {"sigma_z": 0.0, "sigma_y": 3.3, "sigma_x": 0.6}),
    ("median_filter", {"size_z": 3, "size_yx": 5}),
    ("subtract_background", {"radius": 5}),
    ("subtract_background", {"radius": 6, "method": "tophat"}),
    (
        "richardson_lucy",
        {"iterations": 2, "psf_sigma_z": 1.0, "psf_sigma_y": 1.0, "psf_sigma_x": 0.7},
    ),
    ("convert_dtype", {"dtype_out": "uint8", "scale": 0.1}),
    ("soft_magnitude", {}),
]


@pytest.mark.parametrize("name, params", MARGIN_CASES)
@pytest.mark.parametrize(
    "region",
    [
        (slice(20, 26), slice(40, 52), slice(30, 61)),  # inside
        (slice(0, 5), slice(80, 96), slice(0, 10)),  # at the volume's edges
    ],
)
def test_region_with_margin_equals_the_same_region_of_a_full_run(name, params, region):
    spec = get_transform(name)
    params = spec.check_params(params)
    vol = random_volume((40, 96, 96), dtype="uint16", seed=14, low=100, high=3000)
    full = spec.func(vol, **params)
    margin = spec.margin(params)
    assert None not in margin
    read, crop = region_with_margin(vol.shape, region, margin)
    part = spec.func(vol[read], **params)[crop]
    np.testing.assert_array_equal(part, full[region])
    # The margin is needed: without it, a filter's region differs at its border.
    if max(margin) > 0:
        read0, crop0 = region_with_margin(vol.shape, region, (0, 0, 0))
        assert not np.array_equal(spec.func(vol[read0], **params)[crop0], full[region])


def test_margin_none_means_whole_axis():
    assert get_transform("flat_field").margin({}) == (None, None, None)
    assert get_transform("rescale_intensity").margin({}) == (None, None, None)
    read, crop = region_with_margin((16, 128, 128), [None, (10, 20), slice(5, 9)], (None, 3, None))
    assert read == (slice(0, 16), slice(7, 23), slice(0, 128))
    assert crop == (slice(0, 16), slice(3, 13), slice(5, 9))
    with pytest.raises(ValueError, match="empty"):
        region_with_margin((4, 4, 4), [None, (3, 3), None], (0, 0, 0))


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("gaussian_blur", {"sigma_y": -1.0}, "at least 0.0"),
        ("gaussian_blur", {"sigma_y": "big"}, "expects float"),
        ("binning", {"bin_y": 2.5}, "expects int"),
        ("binning", {"bin_y": 0}, "at least 1"),
        ("binning", {"method": "max"}, "one of 'mean', 'sum'"),
        ("binning", {"bin": 2}, "no parameter 'bin'"),
        ("deskew", {"keep_overhang": "yes"}, "expects bool"),
        ("deskew", {"scan_angle": 200.0}, "at most 179.0"),
        ("rescale_intensity", {"dtype_out": "int8"}, "one of 'float32', 'uint16', 'uint8'"),
        ("richardson_lucy", {"iterations": True}, "expects int"),
        ("flat_field", {"sigma": float("nan")}, "finite"),
    ],
)
def test_bad_parameters_are_clear_errors(name, params, message):
    spec = get_transform(name)
    with pytest.raises(TransformParameterError, match=message) as info:
        spec.check_params(params)
    assert name in str(info.value) and next(iter(params)) in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_check_params_converts_compatible_values():
    spec = get_transform("binning")
    assert spec.check_params({"bin_y": 4.0, "bin_z": np.int64(2)}) == {
        "bin_z": 2,
        "bin_y": 4,
        "bin_x": 2,
        "method": "mean",
    }
    assert type(spec.check_params({"bin_y": 4.0})["bin_y"]) is int
    blur = get_transform("gaussian_blur").check_params({"sigma_z": 2})
    assert blur["sigma_z"] == 2.0 and type(blur["sigma_z"]) is float


# -- end to end through the command line --------------------------------------------------------


CLI = [sys.executable, "-m", "napari_process_position.cli"]


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def demo_plate(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.zarr"
    run_cli("demo-data", path)
    return path


def expected_scale(name: str, scale: tuple[float, ...]) -> tuple[float, ...]:
    t, c, z, y, x = scale
    if name == "binning":  # defaults bin (1, 2, 2)
        return (t, c, z, y * 2, x * 2)
    if name == "deskew":  # defaults: 30 degrees
        return (t, c, y * math.sin(math.radians(30)), y, x)
    return scale


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_builtin_runs_at_defaults_over_the_demo_plate(name, demo_plate, tmp_path):
    from napari_process_position import open_store, read_position

    out = tmp_path / f"{name}.zarr"
    run_cli("run", demo_plate, out, "-t", name, "--workers", "2", "--no-progress")
    source = open_store(demo_plate)
    assert open_store(out).position_keys == source.position_keys

    for key in source.position_keys:
        src = read_position(source.position_path(key), key)
        dst = read_position(open_store(out).position_path(key), key)
        volume = src.open_array()[2, 1].read().result()
        expected = getattr(B, name)(volume)  # the function itself, in this process
        assert dst.shape == (src.shape[0], src.shape[1], *expected.shape)
        assert np.dtype(dst.dtype) == expected.dtype
        assert dst.scale == pytest.approx(expected_scale(name, src.scale))
        assert dst.channel_names == src.channel_names
        written = dst.open_array()[2, 1].read().result()
        np.testing.assert_array_equal(written, expected)
