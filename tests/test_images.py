"""images.py: validation, normalisation and resizing of single images (no Beam, no TF)."""

import io

import numpy as np
import pytest
from PIL import Image

import imagegen
from recordkit import images
from recordkit.images import BadImage, ImageOptions, to_rgb_jpeg


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()
    return image


def test_rgb_jpeg_passes_through_byte_for_byte():
    data = imagegen.jpeg(48, 32)
    result = to_rgb_jpeg(data, ImageOptions())
    assert result.jpeg == data
    assert (result.height, result.width) == (32, 48)


@pytest.mark.parametrize(
    "mode,fmt",
    [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("RGB", "PNG"), ("RGB", "BMP"),
     ("P", "GIF"), ("I;16", "PNG"), ("RGB", "WEBP")],
)
def test_other_modes_and_formats_become_rgb_jpeg(mode, fmt):
    data = imagegen.encode(imagegen.pattern(40, 30, mode=mode), fmt)
    result = to_rgb_jpeg(data, ImageOptions())
    image = decode(result.jpeg)
    assert image.mode == "RGB"
    assert image.size == (40, 30) == (result.width, result.height)
    assert result.jpeg != data


def test_sixteen_bit_images_scale_by_bit_depth_not_by_their_maximum():
    dark = Image.fromarray(np.full((8, 8), 999, dtype=np.uint16))
    assert dark.mode.startswith("I")
    result = to_rgb_jpeg(imagegen.encode(dark, "PNG"), ImageOptions())
    assert np.asarray(decode(result.jpeg)).max() <= 6  # 999 / 257 ≈ 4, not stretched to 255


def test_multi_picture_jpeg_keeps_the_first_frame():
    first, second = Image.new("RGB", (32, 24), (200, 0, 0)), Image.new("RGB", (32, 24), (0, 0, 200))
    data = imagegen.encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    result = to_rgb_jpeg(data, ImageOptions())
    pixels = np.asarray(decode(result.jpeg), float)
    assert result.jpeg != data and pixels[..., 0].mean() > 150 and pixels[..., 2].mean() < 50


def test_cmyk_colours_survive_conversion():
    rgb = imagegen.pattern(40, 30, seed=3)
    result = to_rgb_jpeg(imagegen.encode(rgb.convert("CMYK"), "JPEG", quality=95), ImageOptions())
    difference = np.abs(np.asarray(decode(result.jpeg), float) - np.asarray(rgb, float)).mean()
    assert difference < 12


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    result = to_rgb_jpeg(imagegen.encode(image, "PNG"), ImageOptions())
    assert np.asarray(decode(result.jpeg)).mean() > 245


def test_exif_rotation_is_applied():
    result = to_rgb_jpeg(imagegen.exif_rotated_jpeg(48, 32, orientation=6), ImageOptions())
    assert (result.width, result.height) == (32, 48)
    assert 0x0112 not in decode(result.jpeg).getexif()


def test_extension_is_not_trusted_bmp_content_is_converted():
    bmp = imagegen.encode(imagegen.pattern(20, 20), "BMP")
    assert decode(to_rgb_jpeg(bmp, ImageOptions()).jpeg).size == (20, 20)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty file"),
        (b"hello, this is a text file\n", "not an image"),
        (b"\x00" * 4096, "not an image"),
        (imagegen.jpeg(64, 64)[:1500], "truncated JPEG"),
        (imagegen.encode(imagegen.pattern(20, 20), "TIFF"), "unsupported format TIFF"),
    ],
)
def test_bad_inputs_raise_with_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        to_rgb_jpeg(data, ImageOptions())


def _with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """`jpeg` with one more segment right after SOI (a comment, an EXIF block...)."""
    return jpeg[:2] + bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_motion_photo_trailer_is_left_out_and_the_image_kept():
    """Phones append a video after the JPEG's end-of-image marker: the image is fine."""
    jpeg = imagegen.jpeg(64, 48, seed=3)
    motion = jpeg + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
    converted = to_rgb_jpeg(motion, ImageOptions())
    assert converted.jpeg == jpeg and (converted.width, converted.height) == (64, 48)
    progressive = imagegen.encode(imagegen.pattern(64, 48), "JPEG", progressive=True)
    assert to_rgb_jpeg(progressive + b"trailer", ImageOptions()).jpeg == progressive


def test_stray_bytes_between_segments_do_not_hide_the_end_marker():
    jpeg = imagegen.jpeg(64, 48, seed=4)
    sos = jpeg.index(b"\xff\xda")
    stray = jpeg[:sos] + b"\x00\x01junk" + jpeg[sos:]  # libjpeg skips them ("extraneous bytes")
    assert images.jpeg_end(stray + b"trailer") == len(stray)


def test_truncated_jpeg_is_rejected_even_with_an_end_marker_in_a_comment_or_a_trailer():
    jpeg = _with_segment(imagegen.jpeg(64, 64), 0xFE, b"thumbnail \xff\xd8 ... \xff\xd9 end")
    assert to_rgb_jpeg(jpeg, ImageOptions()).jpeg == jpeg
    cut = jpeg[: len(jpeg) - 400]
    for data in (cut, cut + b"\x00\x00\x00\x18ftypmp42"):
        with pytest.raises(BadImage, match="truncated JPEG"):
            to_rgb_jpeg(data, ImageOptions())


def _damaged_jpegs() -> dict[str, bytes]:
    data = imagegen.jpeg(64, 64)
    scan = data.index(b"\xff\xda") + 60  # inside the entropy-coded data
    return {
        "garbage": imagegen.garbage_in_scan(data),
        "zeros": data[:scan] + bytes(300) + data[scan + 300 :],
        "cut, end marker kept": data[:scan] + data[scan + 300 :],
        "header damaged": data[:20] + bytes(200) + data[220:],
    }


def test_garbage_in_the_scan_data_is_caught():
    with pytest.raises(BadImage, match="corrupt JPEG"):
        to_rgb_jpeg(_damaged_jpegs()["garbage"], ImageOptions())


@pytest.mark.parametrize("name", sorted(_damaged_jpegs()))
def test_cheap_validation_rejects_what_a_full_decode_rejects(name):
    """The 1/8-scale check is as strict as a full Pillow decode. (Damage libjpeg only warns
    about, such as a cut with the end marker kept, decodes in both: TF's decoder accepts it too.)"""
    data = _damaged_jpegs()[name]
    try:
        Image.open(io.BytesIO(data)).load()
        full_decode_ok = True
    except Exception:
        full_decode_ok = False
    try:
        to_rgb_jpeg(data, ImageOptions())
        ours_ok = True
    except BadImage:
        ours_ok = False
    assert ours_ok == full_decode_ok


def test_truncated_png_is_caught():
    data = imagegen.encode(imagegen.pattern(64, 64), "PNG")
    with pytest.raises(BadImage, match="corrupt PNG"):
        to_rgb_jpeg(data[: len(data) // 2], ImageOptions())


def test_decompression_bomb_over_the_limit():
    data = imagegen.encode(Image.new("1", (300, 300)), "PNG")
    with pytest.raises(BadImage, match="decompression bomb: 300x300 = 90,000 pixels exceeds the limit of 40,000 pixels"):
        to_rgb_jpeg(data, ImageOptions(max_pixels=200 * 200))


def test_decompression_bomb_at_pillows_hard_limit():
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 10
    data = imagegen.encode(Image.new("1", (side, side)), "PNG")
    assert len(data) < 2_000_000  # tiny file, huge image: the point of a bomb
    # Pillow refuses it itself; the report still states our limit, the same way as above.
    with pytest.raises(BadImage, match=f"decompression bomb: {side * side:,} pixels exceeds the limit of "
                                       f"{ImageOptions().max_pixels:,} pixels"):
        to_rgb_jpeg(data, ImageOptions())


def test_stretch_resizes_to_exact_size():
    result = to_rgb_jpeg(imagegen.jpeg(200, 100), ImageOptions(size=(30, 40)))
    assert (result.height, result.width) == (30, 40)
    assert decode(result.jpeg).size == (40, 30)


def test_crop_keeps_aspect_and_takes_the_centre():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # blue middle third
    result = to_rgb_jpeg(imagegen.encode(image, "PNG"), ImageOptions(size=(50, 50), resize_mode="crop"))
    pixels = np.asarray(decode(result.jpeg), float)
    assert pixels.shape == (50, 50, 3)
    assert pixels[..., 2].mean() > 200 and pixels[..., 0].mean() < 50


def test_resizing_a_jpeg_reencodes_with_the_quality_asked():
    data = imagegen.jpeg(120, 120)
    low = to_rgb_jpeg(data, ImageOptions(size=(120, 120), jpeg_quality=20))
    high = to_rgb_jpeg(data, ImageOptions(size=(120, 120), jpeg_quality=98))
    assert len(low.jpeg) < len(high.jpeg)


@pytest.mark.parametrize("text,size", [("299", (299, 299)), ("320x240", (240, 320)), ("64X32", (32, 64))])
def test_parse_size(text, size):
    assert images.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "0", "1x2x3", "-5"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        images.parse_size(text)


def test_options_are_checked():
    with pytest.raises(ValueError, match="resize mode"):
        ImageOptions(resize_mode="squash")
    with pytest.raises(ValueError, match="quality"):
        ImageOptions(jpeg_quality=0)
    with pytest.raises(ValueError, match="Pillow's own limit"):
        ImageOptions(max_pixels=images.PILLOW_HARD_LIMIT + 1)
