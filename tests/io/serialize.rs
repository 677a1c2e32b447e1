//! Tests of `smallgrad::serialize` (safetensors): round trips, corruption cases, files written
//! by PyTorch's `safetensors`, and no-panic proptests on random and mutated bytes.

use proptest::prelude::*;
use smallgrad::serialize::{
    self, AnyTensor, from_bytes, from_bytes_any, load, load_any, save, save_any, to_bytes, to_bytes_any,
};
use smallgrad::{Device, Error, Tensor};
use std::path::PathBuf;

fn t32(v: Vec<f32>, shape: &[usize]) -> Tensor<f32> {
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn t64(v: Vec<f64>, shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn meta(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smallgrad_ser_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128)
}

/// Builds a file from a raw header string and data bytes.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn err_msg<X>(r: Result<X, Error>) -> String {
    match r {
        Err(Error::Io { msg, .. }) => msg,
        Err(e) => panic!("expected Error::Io, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn roundtrip_f32_with_empty_scalar_and_metadata() {
    let tensors = vec![
        (
            "a.weight".to_string(),
            t32((0..6).map(|i| i as f32 - 2.5).collect(), &[2, 3]),
        ),
        ("empty".to_string(), t32(vec![], &[0, 4])),
        ("scalar".to_string(), t32(vec![f32::MIN_POSITIVE], &[])),
        (
            "weird \"name\" \\ é\n".to_string(),
            t32(vec![f32::INFINITY, -0.0, f32::MAX], &[3]),
        ),
    ];
    let m = meta(&[("epoch", "12"), ("quote", "a\"b\\c\u{1}")]);
    let bytes = to_bytes(&tensors, &m).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + header_len) % 8, 0, "header is padded to 8 bytes");
    let (back, m2) = from_bytes::<f32>(&bytes).unwrap();
    assert_eq!(m2, m);
    assert_eq!(back.len(), tensors.len());
    for ((n1, a), (n2, b)) in tensors.iter().zip(&back) {
        assert_eq!(n1, n2);
        assert_eq!(a.shape(), b.shape());
        let (va, vb) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        assert_eq!(
            va.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            vb.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
    // Loading as the other dtype is refused with a pointer to load_any.
    assert!(err_msg(from_bytes::<f64>(&bytes)).contains("from_bytes_any"));
}

#[test]
fn roundtrip_f64_file_and_atomic_overwrite() {
    let p = tmp("model.safetensors");
    let tensors = vec![(
        "w".to_string(),
        t64(vec![1e-300, std::f64::consts::PI, -7.0, 0.1], &[2, 2]),
    )];
    save(&p, &tensors, &[]).unwrap();
    let (back, m) = load::<f64>(&p).unwrap();
    assert!(m.is_empty());
    assert_eq!(
        back[0].1.to_vec().unwrap(),
        vec![1e-300, std::f64::consts::PI, -7.0, 0.1]
    );
    // Overwrite in place; no temporary file is left behind.
    save(&p, &[("w".to_string(), t64(vec![2.0], &[]))], &meta(&[("k", "v")])).unwrap();
    let (back, m) = load::<f64>(&p).unwrap();
    assert_eq!((back[0].1.shape(), back[0].1.item().unwrap()), (&[][..], 2.0));
    assert_eq!(m, meta(&[("k", "v")]));
    let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp")), "{names:?}");
    // Zero tensors is a valid file too.
    let empty = to_bytes::<f32>(&[], &[]).unwrap();
    assert!(from_bytes::<f32>(&empty).unwrap().0.is_empty());
    let missing = err_msg(load::<f32>(tmp("nope.safetensors")));
    assert!(missing.contains("cannot read"), "{missing}");
    assert!(save(tmp("no_dir/x/y.safetensors"), &tensors, &[]).is_err());
}

#[test]
fn mixed_dtypes_roundtrip() {
    let tensors = vec![
        ("a".to_string(), AnyTensor::F64(t64(vec![0.5; 3], &[3]))),
        ("b".to_string(), AnyTensor::F32(t32(vec![1.5, 2.5], &[1, 2]))),
    ];
    let bytes = to_bytes_any(&tensors, &[]).unwrap();
    let (back, _) = from_bytes_any(&bytes, "mem").unwrap();
    assert_eq!(
        back.iter().map(|(n, t)| (n.as_str(), t.dtype())).collect::<Vec<_>>(),
        vec![("a", "F64"), ("b", "F32")]
    );
    let AnyTensor::F32(b) = &back[1].1 else { panic!() };
    assert_eq!(b.to_vec().unwrap(), vec![1.5, 2.5]);
    let p = tmp("mixed.safetensors");
    save_any(&p, &tensors, &[]).unwrap();
    assert_eq!(load_any(&p).unwrap().0[0].1.shape(), &[3]);
}

#[test]
fn writer_rejects_bad_names() {
    let t = t32(vec![1.0], &[1]);
    assert!(err_msg(to_bytes(&[("x".into(), t.clone()), ("x".into(), t.clone())], &[])).contains("duplicate"));
    assert!(to_bytes(&[("__metadata__".into(), t.clone())], &[]).is_err());
    assert!(to_bytes(&[("x".into(), t)], &meta(&[("k", "1"), ("k", "2")])).is_err());
}

#[test]
fn corrupt_files_are_errors_with_messages() {
    let good = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let d8 = [0u8; 8];
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let mut past_end = 1000u64.to_le_bytes().to_vec();
    past_end.extend_from_slice(b"{}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "too short"),
        ("short length", vec![1, 2, 3], "too short"),
        ("huge header length", huge, "exceeds the limit"),
        ("header past end", past_end, "truncated"),
        (
            "not utf-8",
            raw_file("{\"\u{e9}\":1}", &[])
                .into_iter()
                .map(|b| if b == 0xc3 { 0xff } else { b })
                .collect(),
            "UTF-8",
        ),
        ("invalid json", raw_file("{\"a\":", &[]), "not valid JSON"),
        ("not an object", raw_file("[1,2]", &[]), "must be a JSON object"),
        ("entry not an object", raw_file(r#"{"a":3}"#, &[]), "expected an object"),
        (
            "unknown dtype",
            raw_file(r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, &d8),
            "unknown dtype",
        ),
        (
            "unsupported dtype",
            raw_file(r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#, &d8),
            "unsupported dtype",
        ),
        (
            "missing shape",
            raw_file(r#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, &d8),
            "shape",
        ),
        (
            "negative dim",
            raw_file(r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, &d8),
            "non-negative",
        ),
        (
            "fractional dim",
            raw_file(r#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, &d8),
            "non-negative",
        ),
        (
            "extra field",
            raw_file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#, &d8),
            "unknown field",
        ),
        (
            "bad offsets",
            raw_file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, &d8),
            "data_offsets",
        ),
        (
            "backwards offsets",
            raw_file(r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, &d8),
            "backwards",
        ),
        (
            "shape vs bytes",
            raw_file(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &d8),
            "needs 12 bytes",
        ),
        (
            "shape overflow",
            raw_file(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                &d8,
            ),
            "more than usize::MAX",
        ),
        (
            "offsets out of range",
            raw_file(good, &[0; 4]),
            "cover 8 data bytes but the file holds 4",
        ),
        ("trailing data", raw_file(good, &[0; 12]), "holds 12"),
        (
            "overlap",
            raw_file(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                &d8,
            ),
            "overlaps",
        ),
        (
            "hole",
            raw_file(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &d8),
            "hole",
        ),
        (
            "duplicate name",
            raw_file(
                &format!("{{{0},{0}}}", r#""a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}"#),
                &[],
            ),
            "duplicate key",
        ),
        (
            "metadata not strings",
            raw_file(r#"{"__metadata__":{"k":1}}"#, &[]),
            "must be a string",
        ),
        (
            "metadata not object",
            raw_file(r#"{"__metadata__":[]}"#, &[]),
            "must be an object",
        ),
        (
            "deep nesting",
            raw_file(&format!("{{\"a\":{}", "[".repeat(10_000)), &[]),
            "nesting",
        ),
    ];
    for (case, bytes, needle) in cases {
        let msg = err_msg(from_bytes_any(&bytes, "case.safetensors"));
        assert!(msg.contains(needle), "{case}: message {msg:?} lacks {needle:?}");
    }
    assert!(from_bytes::<f32>(&raw_file(good, &d8)).is_ok());
    // The file name appears in the Display of the error.
    let e = serialize::from_bytes_named::<f32>(&[], "ckpt.safetensors")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ckpt.safetensors: "), "{e}");
}

#[test]
fn interop_reads_file_written_by_torch() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_written.safetensors");
    let (tensors, m) = load_any(&p).unwrap();
    let mut m = m;
    m.sort();
    assert_eq!(m, meta(&[("format", "pt"), ("written_by", "torch")]));
    let get = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap();
    let AnyTensor::F32(a) = get("arange_f32") else {
        panic!("arange_f32 is not F32")
    };
    assert_eq!(a.shape(), &[3, 4]);
    assert_eq!(
        a.to_vec().unwrap(),
        (0..12).map(|i| i as f32 * 0.5 - 1.0).collect::<Vec<_>>()
    );
    let AnyTensor::F64(b) = get("arange_f64") else {
        panic!("arange_f64 is not F64")
    };
    assert_eq!(b.shape(), &[2, 1, 3]);
    assert_eq!(b.to_vec().unwrap(), (0..6).map(|i| i as f64 / 3.0).collect::<Vec<_>>());
    let AnyTensor::F32(s) = get("scalar_f32") else { panic!() };
    assert_eq!((s.shape(), s.item().unwrap()), (&[][..], 3.25));
    let AnyTensor::F32(e) = get("empty_f32") else { panic!() };
    assert_eq!(e.shape(), &[0, 5]);
    assert_eq!(tensors.len(), 4);
    // A mixed file cannot be loaded as a single dtype.
    assert!(load::<f32>(&p).is_err());
}

/// Writes target/interop/smallgrad_written.safetensors for scripts/check_safetensors_interop.py.
#[test]
fn interop_writes_file_for_python() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop");
    std::fs::create_dir_all(&dir).unwrap();
    let tensors = vec![
        (
            "w_f32".to_string(),
            AnyTensor::F32(t32((0..24).map(|i| i as f32 * 0.25 - 2.0).collect(), &[2, 3, 4])),
        ),
        (
            "b_f64".to_string(),
            AnyTensor::F64(t64(vec![-1.5, 0.0, 1e-300, std::f64::consts::PI], &[4])),
        ),
        ("scalar".to_string(), AnyTensor::F64(t64(vec![2.5], &[]))),
        ("empty".to_string(), AnyTensor::F32(t32(vec![], &[0, 3]))),
    ];
    let m = meta(&[("epoch", "7"), ("note", "quote \" backslash \\ é\n")]);
    let p = dir.join("smallgrad_written.safetensors");
    save_any(&p, &tensors, &m).unwrap();
    assert_eq!(load_any(&p).unwrap().1, m);
}

// ------------------------------------------------------------------ no panics on any bytes

fn valid_file() -> Vec<u8> {
    let tensors = vec![
        ("a".to_string(), AnyTensor::F32(t32(vec![1.0, 2.0, 3.0], &[3]))),
        ("b".to_string(), AnyTensor::F64(t64(vec![4.0, 5.0], &[1, 2]))),
        ("c".to_string(), AnyTensor::F32(t32(vec![], &[0]))),
    ];
    to_bytes_any(&tensors, &meta(&[("k", "v\u{e9}")])).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = from_bytes_any(&bytes, "r");
        // Also with a plausible header length in front.
        let mut v = ((bytes.len() as u64) / 2).to_le_bytes().to_vec();
        v.extend(&bytes);
        let _ = from_bytes_any(&v, "r");
    }

    #[test]
    fn mutated_files_never_panic(ops in proptest::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 1..5)) {
        let mut v = valid_file();
        for (op, pos, byte) in ops {
            let at = pos % (v.len() + 1);
            match op {
                0 if at < v.len() => v[at] ^= byte | 1,
                1 => v.truncate(at),
                _ => v.insert(at, byte),
            }
        }
        if let Ok((tensors, _)) = from_bytes_any(&v, "m") {
            // Whatever loads is self-consistent: re-encoding and decoding gives it back.
            let again = from_bytes_any(&to_bytes_any(&tensors, &[]).unwrap(), "again").unwrap().0;
            prop_assert_eq!(again.len(), tensors.len());
        }
    }

    #[test]
    fn json_fuzz_in_header_never_panics(header in "[\\[\\]{}\",:0-9a-zA-Z_\\\\ .eE+-]{0,80}") {
        let _ = from_bytes_any(&raw_file(&header, &[]), "h");
    }
}
