//! The wrapper's calls against plain Rust references of the same math, and the errors of bad calls.
use mamba_example::{
    rms_norm, selective_state_update, status_name, sys, Context, StepInputs, Tensor, TensorMut,
};

/// Values in [-2, 2) from a fixed linear congruential sequence.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: {g} against {w}"
        );
    }
}

#[test]
fn rms_norm_matches_the_formula() {
    let ctx = Context::cpu(2).unwrap();
    let (rows, hidden) = (5usize, 48usize);
    let x = values(rows * hidden, 1);
    let w = values(hidden, 2);
    let mut y = vec![f32::NAN; rows * hidden];
    let shape = [rows as i64, hidden as i64];
    rms_norm(
        &ctx,
        &Tensor::new(&x, &shape).unwrap(),
        &Tensor::new(&w, &[hidden as i64]).unwrap(),
        &mut TensorMut::new(&mut y, &shape).unwrap(),
        1e-5,
    )
    .unwrap();
    let mut want = vec![0.0f64; rows * hidden];
    for r in 0..rows {
        let row = &x[r * hidden..(r + 1) * hidden];
        let mean_sq = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / hidden as f64;
        let scale = 1.0 / (mean_sq + 1e-5).sqrt();
        for i in 0..hidden {
            want[r * hidden + i] = row[i] as f64 * scale * w[i] as f64;
        }
    }
    assert_close(&y, &want, 1e-5);
}

fn softplus(v: f64) -> f64 {
    if v > 20.0 {
        v
    } else {
        v.exp().ln_1p()
    }
}

#[test]
fn decode_steps_match_the_recurrence() {
    let ctx = Context::cpu(0).unwrap();
    let (batch, dim, dstate, groups) = (2usize, 6usize, 4usize, 2usize);
    let a: Vec<f32> = values(dim * dstate, 3)
        .iter()
        .map(|v| -(v.abs() + 0.1))
        .collect();
    let d = values(dim, 4);
    let bias = values(dim, 5);
    let mut state = vec![0.0f32; batch * dim * dstate];
    let mut want_state = vec![0.0f64; batch * dim * dstate];
    for step in 0..4u64 {
        let x = values(batch * dim, 10 + step);
        let dt = values(batch * dim, 20 + step);
        let b = values(batch * groups * dstate, 30 + step);
        let c = values(batch * groups * dstate, 40 + step);
        let z = values(batch * dim, 50 + step);
        let mut y = vec![f32::NAN; batch * dim];
        let (bd, dn, bgn) = (
            [batch as i64, dim as i64],
            [dim as i64, dstate as i64],
            [batch as i64, groups as i64, dstate as i64],
        );
        let (xt, dtt, at, bt, ct) = (
            Tensor::new(&x, &bd).unwrap(),
            Tensor::new(&dt, &bd).unwrap(),
            Tensor::new(&a, &dn).unwrap(),
            Tensor::new(&b, &bgn).unwrap(),
            Tensor::new(&c, &bgn).unwrap(),
        );
        let (dtn, zt, biast) = (
            Tensor::new(&d, &[dim as i64]).unwrap(),
            Tensor::new(&z, &bd).unwrap(),
            Tensor::new(&bias, &[dim as i64]).unwrap(),
        );
        let inputs = StepInputs {
            x: &xt,
            dt: &dtt,
            a: &at,
            b: &bt,
            c: &ct,
            d: Some(&dtn),
            z: Some(&zt),
            dt_bias: Some(&biast),
            dt_softplus: true,
        };
        let state_shape = [batch as i64, dim as i64, dstate as i64];
        selective_state_update(
            &ctx,
            &mut TensorMut::new(&mut state, &state_shape).unwrap(),
            &inputs,
            &mut TensorMut::new(&mut y, &bd).unwrap(),
        )
        .unwrap();

        let mut want_y = vec![0.0f64; batch * dim];
        for bi in 0..batch {
            for ch in 0..dim {
                let g = ch / (dim / groups);
                let delta = softplus(dt[bi * dim + ch] as f64 + bias[ch] as f64);
                let mut acc = 0.0f64;
                for n in 0..dstate {
                    let s = &mut want_state[(bi * dim + ch) * dstate + n];
                    let bn = b[(bi * groups + g) * dstate + n] as f64;
                    *s = (delta * a[ch * dstate + n] as f64).exp() * *s
                        + delta * bn * x[bi * dim + ch] as f64;
                    acc += c[(bi * groups + g) * dstate + n] as f64 * *s;
                }
                let zv = z[bi * dim + ch] as f64;
                want_y[bi * dim + ch] =
                    (acc + d[ch] as f64 * x[bi * dim + ch] as f64) * zv / (1.0 + (-zv).exp());
            }
        }
        assert_close(&y, &want_y, 1e-4);
        assert_close(&state, &want_state, 1e-4);
    }
}

#[test]
fn a_wrong_shape_is_refused_by_the_library_with_its_message() {
    let ctx = Context::cpu(1).unwrap();
    let x = values(8, 6);
    let long = values(5, 7);
    let mut y = vec![0.0f32; 8];
    let err = rms_norm(
        &ctx,
        &Tensor::new(&x, &[2, 4]).unwrap(),
        &Tensor::new(&long, &[5]).unwrap(),
        &mut TensorMut::new(&mut y, &[2, 4]).unwrap(),
        1e-5,
    )
    .unwrap_err();
    assert_eq!(err.status, sys::MAMBA_STATUS_INVALID_ARGUMENT);
    assert!(
        err.message.starts_with("mamba_rms_norm:"),
        "{}",
        err.message
    );
    assert!(err.message.contains("weight"), "{}", err.message);
    assert_eq!(status_name(err.status), "MAMBA_STATUS_INVALID_ARGUMENT");
}

#[test]
fn a_shape_the_slice_cannot_hold_is_refused_before_the_call() {
    let data = values(6, 8);
    let err = Tensor::new(&data, &[2, 4])
        .err()
        .expect("8 elements do not fit in 6");
    assert_eq!(err.status, sys::MAMBA_STATUS_INVALID_ARGUMENT);
    assert!(
        err.message.contains("holds 8 elements, the slice 6"),
        "{}",
        err.message
    );
    assert!(
        Tensor::new(&data, &[-2, -3]).is_err(),
        "negative dimensions"
    );
    let huge = Tensor::new(&data, &[1 << 40, 1 << 40])
        .err()
        .expect("a count past i64");
    assert!(
        huge.message.contains("more elements than an i64 counts"),
        "{}",
        huge.message
    );
}
