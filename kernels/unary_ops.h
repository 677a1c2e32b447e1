// Generated from src/ops/elementwise/unary.rs (UnaryOp::CODE of every op) by its test
// `unary_ops_header_is_generated_from_the_definitions`; do not edit: change the Rust
// definition and run `SMALLGRAD_REGENERATE=1 cargo test --lib unary_ops_header`.
// v: the value the backward kernel reads (x, y, or none), as UnaryOp::SAVES says.
#pragma once
#define UNARY_NEG          0  // no v
#define UNARY_EXP          1  // v = y
#define UNARY_LOG          2  // v = x
#define UNARY_SQRT         3  // v = y
#define UNARY_ABS          4  // v = x
#define UNARY_RELU         5  // v = y
#define UNARY_TANH         6  // v = y
#define UNARY_SIGMOID      7  // v = y
#define UNARY_POWF         8  // v = x
#define UNARY_CLAMP_MIN    9  // v = x
#define UNARY_ADD_SCALAR  10  // no v
#define UNARY_MUL_SCALAR  11  // no v
