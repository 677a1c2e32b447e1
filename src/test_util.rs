//! The unit tests' one finite-difference helper (the public one is [`crate::gradcheck`]; this is
//! for tests inside the crate that check a backward against plain `f64` functions).

/// The gradient of `f` at `x` by central differences, `(f(x + h e_i) - f(x - h e_i)) / 2h` with
/// `h = 1e-6`: accurate to about 1e-9 for smooth `f` in f64.
pub(crate) fn central_difference(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

/// Asserts `|analytic - numeric| <= tol * (1 + |numeric|)` element by element, naming `what`.
#[track_caller]
pub(crate) fn assert_close(what: &str, analytic: &[f64], numeric: &[f64], tol: f64) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: lengths");
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= tol * (1.0 + n.abs()),
            "{what}[{i}]: analytic {a}, numeric {n}"
        );
    }
}
