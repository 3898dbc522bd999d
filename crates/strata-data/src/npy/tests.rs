use super::*;

/// A .npy file with an arbitrary header dict and payload.
fn npy(major: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.push(major);
    v.push(0);
    let h = format!("{dict}\n");
    if major == 1 {
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        v.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(payload);
    v
}

fn dict(descr: &str, fortran: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
}

fn tmp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("strata-npy-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn roundtrip_f32_and_i64() {
    let dir = tmp_dir("rt");
    let t = Tensor::from_vec((0..24).map(|v| v as f32 * 0.5 - 3.0).collect(), &[2, 3, 4]).unwrap();
    let p = dir.join("x.npy");
    write_npy_f32(&p, &t).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0);
    assert_eq!(bytes[10 + hl - 1], b'\n');
    let a = read_npy(&p).unwrap();
    assert_eq!(a.dtype(), NpyDtype::F32);
    assert_eq!(a.shape(), &[2, 3, 4]);
    assert!(a.to_tensor().unwrap().allclose(&t, 0.0, 0.0));

    let q = dir.join("y.npy");
    write_npy_i64(&q, &[5, -1, 7], &[3]).unwrap();
    let b = read_npy(&q).unwrap();
    assert_eq!(b.dtype(), NpyDtype::I64);
    assert_eq!(b.shape(), &[3]);
    assert_eq!(b.to_i64().unwrap(), vec![5, -1, 7]);
    assert!(b.to_labels().is_err());
    assert!(write_npy_i64(&q, &[1, 2], &[3]).is_err());

    // Scalars and empty arrays.
    write_npy_f32(&p, &Tensor::scalar(2.5)).unwrap();
    let s = read_npy(&p).unwrap();
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_eq!(s.to_f32(), vec![2.5]);
    write_npy_f32(&p, &Tensor::zeros(&[0, 3])).unwrap();
    assert_eq!(read_npy(&p).unwrap().shape(), &[0, 3]);
    // No temporary files left behind.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn numpy_written_header_parses() {
    // Exactly what numpy 1.x writes for np.save('a.npy', np.zeros((2,3), 'f4')).
    let d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let padded = format!("{d}{}", " ".repeat(128 - 10 - d.len() - 1));
    let a = read_npy_bytes("a", &npy(1, &padded, &[0u8; 24])).unwrap();
    assert_eq!(a.shape(), &[2, 3]);
    // Double quotes, no trailing comma, other key order, 1-D tuple.
    let d = r#"{"shape": (4,), "fortran_order": False, "descr": "<i4"}"#;
    let payload: Vec<u8> = [1i32, 2, 3, -4]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = read_npy_bytes("b", &npy(1, d, &payload)).unwrap();
    assert_eq!(a.to_i64().unwrap(), vec![1, 2, 3, -4]);
}

#[test]
fn dtypes_and_versions() {
    let f8: Vec<u8> = [1.5f64, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for major in [1, 2, 3] {
        let a = read_npy_bytes("f8", &npy(major, &dict("<f8", "False", "(2,)"), &f8)).unwrap();
        assert_eq!(a.to_f32(), vec![1.5, -2.0]);
        assert!(a.to_i64().unwrap_err().to_string().contains("whole"));
    }
    let a = read_npy_bytes("u1", &npy(1, &dict("|u1", "False", "(3,)"), &[0, 9, 255])).unwrap();
    assert_eq!(a.to_labels().unwrap(), vec![0, 9, 255]);
    let a = read_npy_bytes("b1", &npy(1, &dict("|b1", "False", "(2,)"), &[1, 0])).unwrap();
    assert_eq!(a.to_f32(), vec![1.0, 0.0]);
    assert!(read_npy_bytes("b1", &npy(1, &dict("|b1", "False", "(1,)"), &[7])).is_err());
    let i8b: Vec<u8> = [3i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = read_npy_bytes("i8", &npy(1, &dict("<i8", "False", "(1, 2)"), &i8b)).unwrap();
    assert_eq!(a.to_labels().unwrap(), vec![3, 4]);
    // Float labels that are whole numbers convert.
    let f4: Vec<u8> = [3f32, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = read_npy_bytes("f4", &npy(1, &dict("<f4", "False", "(2,)"), &f4)).unwrap();
    assert_eq!(a.to_labels().unwrap(), vec![3, 1]);
    let e = read_npy_bytes("v", &npy(4, &dict("<f4", "False", "(2,)"), &f4)).unwrap_err();
    assert!(e.to_string().contains("invalid version"), "{e}");
}

fn err_of(bytes: &[u8]) -> String {
    read_npy_bytes("bad.npy", bytes).unwrap_err().to_string()
}

#[test]
fn hostile_headers() {
    let e = err_of(&npy(1, &dict("<f4", "True", "(2,)"), &[0; 8]));
    assert!(e.contains("bad.npy: invalid header.fortran_order"), "{e}");
    let e = err_of(&npy(1, &dict(">f4", "False", "(2,)"), &[0; 8]));
    assert!(e.contains("big-endian"), "{e}");
    let e = err_of(&npy(1, &dict("|O", "False", "(2,)"), &[0; 16]));
    assert!(e.contains("object"), "{e}");
    let e = err_of(&npy(1, &dict("<c8", "False", "(2,)"), &[0; 16]));
    assert!(e.contains("not supported"), "{e}");
    let e = err_of(&npy(
        1,
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
        &[0; 8],
    ));
    assert!(e.contains("structured"), "{e}");
    for bad in [
        "{'descr': '<f4', 'fortran_order': False, }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ",
        "{'descr': '<f4 , 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk",
        "['descr']",
        "",
        "{1: 2}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((2,),),),),),),),),),)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}",
    ] {
        let e = err_of(&npy(1, bad, &[0; 8]));
        assert!(e.starts_with("bad.npy: invalid header"), "{bad}: {e}");
    }
}

#[test]
fn hostile_sizes_and_encoding() {
    // 10^12 elements declared in a ~100-byte file.
    let e = err_of(&npy(
        1,
        &dict("<f4", "False", "(1000000, 1000000)"),
        &[0; 16],
    ));
    assert!(e.contains("invalid shape"), "{e}");
    // Overflowing element count and byte count.
    let e = err_of(&npy(
        1,
        &dict("<f8", "False", "(4294967296, 4294967296, 4294967296)"),
        &[],
    ));
    assert!(e.contains("overflows"), "{e}");
    let e = err_of(&npy(
        1,
        &dict("<f8", "False", "(4611686018427387904,)"),
        &[],
    ));
    assert!(e.contains("overflows"), "{e}");
    // Truncated data, and extra data.
    assert!(err_of(&npy(1, &dict("<f4", "False", "(3,)"), &[0; 11])).contains("shape"));
    assert!(err_of(&npy(1, &dict("<f4", "False", "(3,)"), &[0; 13])).contains("shape"));
    // Bad UTF-8 in the header.
    let mut b = npy(1, &dict("<f4", "False", "(1,)"), &[0; 4]);
    b[12] = 0xff;
    assert!(err_of(&b).contains("UTF-8"));
    // Header length past the end; truncated prefix; bad magic.
    let mut b = npy(1, &dict("<f4", "False", "(1,)"), &[0; 4]);
    b[8] = 0xff;
    b[9] = 0xff;
    assert!(err_of(&b).contains("header length"));
    let full = npy(2, &dict("<f4", "False", "(1,)"), &[0; 4]);
    for n in 0..full.len() {
        assert!(read_npy_bytes("t", &full[..n]).is_err(), "prefix {n}");
    }
    assert!(err_of(b"PK\x03\x04 not npy").contains("magic"));
    let e = read_npy(std::env::temp_dir().join("strata-no-such.npy")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz over mutations of a valid file.
    let valid = npy_bytes_f32(&Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap());
    let mut rng = strata_core::Rng::new(7);
    for _ in 0..3000 {
        let mut b = valid.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len());
            b[i] = rng.below(256) as u8;
        }
        let cut = rng.below(b.len() + 1);
        let _ = read_npy_bytes("fuzz", &b[..cut]);
        let _ = read_npy_bytes("fuzz", &b);
    }
}
