//! The PTX of kernels/*.cu, compiled by build.rs with nvcc and embedded here: one module per op
//! family, loaded once per device.

macro_rules! ptx {
    ($($name:literal),* $(,)?) => {
        /// (family, PTX text) for every kernels/*.cu file.
        pub(crate) const MODULES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!(env!("OUT_DIR"), "/", $name, ".ptx")))),*
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
