//! Decoding: EXIF orientation applied, formats this build reads, and errors
//! naming the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vision::decode::decode_upright;
use vision::{Error, RgbImage};

/// A big-endian TIFF block holding one EXIF orientation entry.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

/// The pixel (x, y) of an image.
fn pixel(img: &RgbImage, x: usize, y: usize) -> [u8; 3] {
    let i = (y * img.width + x) * 3;
    [img.data[i], img.data[i + 1], img.data[i + 2]]
}

#[test]
fn images_are_decoded_upright_with_their_exif_orientation() {
    use image::ImageEncoder;
    let tmp = tempfile::tempdir().unwrap();
    // 32 wide, 16 high: the left half red, the right half blue.
    let stored = image::RgbImage::from_fn(32, 16, |x, _| if x < 16 { image::Rgb([250, 0, 0]) } else { image::Rgb([0, 0, 250]) });
    let path = tmp.path().join("photo.jpg");
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    // 6: the camera was turned; show the stored bitmap rotated 90 degrees clockwise.
    encoder.set_exif_metadata(exif_orientation(6)).unwrap();
    encoder.write_image(stored.as_raw(), 32, 16, image::ExtendedColorType::Rgb8).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let upright = decode_upright(&path).unwrap();
    assert_eq!((upright.width, upright.height), (16, 32), "rotated: 16 wide, 32 high");
    // The stored left (red) half is now the top.
    let (top, bottom) = (pixel(&upright, 8, 4), pixel(&upright, 8, 28));
    assert!(top[0] > 200 && top[2] < 50, "{top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 50, "{bottom:?}");

    // Without a tag nothing turns.
    let plain = tmp.path().join("plain.png");
    stored.save(&plain).unwrap();
    assert_eq!(decode_upright(&plain).unwrap(), RgbImage::from_buffer(stored));
}

#[test]
fn grey_alpha_bmp_and_pnm_files_decode_to_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let grey = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(10 * x + 100 * y) as u8]));
    let rgba = image::RgbaImage::from_fn(3, 2, |x, y| image::Rgba([x as u8, y as u8, 9, 17]));
    let rgb = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 200]));
    grey.save(tmp.path().join("grey.png")).unwrap();
    rgba.save(tmp.path().join("alpha.png")).unwrap();
    rgb.save(tmp.path().join("a.bmp")).unwrap();
    rgb.save(tmp.path().join("a.ppm")).unwrap();
    let g = decode_upright(&tmp.path().join("grey.png")).unwrap();
    assert_eq!(pixel(&g, 2, 1), [120, 120, 120]);
    let a = decode_upright(&tmp.path().join("alpha.png")).unwrap();
    assert_eq!(pixel(&a, 2, 1), [2, 1, 9]);
    for name in ["a.bmp", "a.ppm"] {
        assert_eq!(decode_upright(&tmp.path().join(name)).unwrap(), RgbImage::from_buffer(rgb.clone()), "{name}");
    }
}

#[test]
fn unreadable_files_are_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let corrupt = tmp.path().join("corrupt.png");
    std::fs::write(&corrupt, b"not a png").unwrap();
    let missing = tmp.path().join("missing.jpg");
    for path in [corrupt, missing] {
        let err = decode_upright(&path).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }) && err.is_user_error(), "{err:?}");
        assert_eq!(err.path(), Some(path.as_path()));
        assert!(err.to_string().contains(path.file_name().unwrap().to_str().unwrap()), "{err}");
    }
}
