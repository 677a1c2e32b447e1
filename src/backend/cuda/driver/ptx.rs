//! The PTX of kernels/*.cu, compiled by build.rs with nvcc and embedded here (one module per op
//! family, loaded once per device), and the parameter lists of its `.entry` functions, which the
//! launcher checks every launch against: `cuLaunchKernel` copies as many bytes from each
//! argument pointer as the PTX declares, so an argument of the wrong size would be read wrong
//! without any error.

macro_rules! ptx {
    ($($name:literal),* $(,)?) => {
        /// (family, PTX text) for every kernels/*.cu file.
        pub(crate) const MODULES: &[(&str, &str)] = &[
            $(($name, concat!(include_str!(concat!(env!("OUT_DIR"), "/", $name, ".ptx")), "\0"))),*
        ];
    };
}

ptx!(
    "batchnorm",
    "conv",
    "elementwise",
    "loss",
    "optim",
    "pool",
    "reduce",
    "shape",
    "softmax"
);

/// One `.entry` of a PTX module: its name and the size in bytes of each parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub name: String,
    pub params: Vec<usize>,
}

fn type_size(t: &str) -> Option<usize> {
    Some(match t {
        ".b8" | ".u8" | ".s8" | ".pred" => 1,
        ".b16" | ".u16" | ".s16" | ".f16" | ".bf16" => 2,
        ".b32" | ".u32" | ".s32" | ".f32" | ".f16x2" => 4,
        ".b64" | ".u64" | ".s64" | ".f64" => 8,
        ".b128" => 16,
        _ => return None,
    })
}

/// The size of one `.param` declaration, e.g. `.param .align 8 .b8 name[88]` (88) or
/// `.param .u64 name` (8).
fn param_size(decl: &str) -> Option<usize> {
    let decl = decl.trim();
    let rest = decl.strip_prefix(".param")?;
    let mut elem = None;
    let mut count = 1usize;
    for tok in rest.split_whitespace() {
        if let Some(s) = type_size(tok) {
            elem = Some(s);
        } else if let Some(open) = tok.find('[') {
            let n = tok[open + 1..].trim_end_matches(']');
            count = count.checked_mul(n.parse().ok()?)?;
        }
    }
    elem.map(|e| e * count)
}

/// The `.entry` functions of a PTX text, in order.
pub(crate) fn entries(ptx: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(".entry ") {
        let after = &rest[at + ".entry ".len()..];
        let Some(open) = after.find('(') else { break };
        let name = after[..open].trim().to_string();
        let Some(close) = after[open..].find(')') else { break };
        let list = &after[open + 1..open + close];
        let params = list
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .filter_map(param_size)
            .collect();
        out.push(Entry { name, params });
        rest = &after[open + close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_and_parameter_sizes() {
        let ptx = "
.version 9.0
.target sm_80
.visible .entry im2col_f32(
\t.param .u64 im2col_f32_param_0,
\t.param .f32 im2col_f32_param_1,
\t.param .align 8 .b8 im2col_f32_param_3[88]
)
{
\tret;
}
.visible .entry fill_f64(
\t.param .u64 .ptr .global .align 8 fill_f64_param_0,
\t.param .f64 fill_f64_param_1
)
{ ret; }
";
        assert_eq!(
            entries(ptx),
            vec![
                Entry {
                    name: "im2col_f32".into(),
                    params: vec![8, 4, 88]
                },
                Entry {
                    name: "fill_f64".into(),
                    params: vec![8, 8]
                },
            ]
        );
    }

    #[test]
    fn every_embedded_module_has_entries_with_known_sizes() {
        for (family, text) in MODULES {
            let e = entries(text);
            assert!(!e.is_empty(), "kernels/{family}.cu: no .entry in its PTX");
            for k in &e {
                assert!(
                    k.name.ends_with("_f32") || k.name.ends_with("_f64"),
                    "kernels/{family}.cu: {}",
                    k.name
                );
                assert!(k.params.iter().all(|&s| s > 0), "{k:?}");
            }
        }
    }
}
