//! Runs an RMSNorm and a few Mamba-1 decode steps through libmamba on the program's own buffers, then shows how a
//! failed call reports its error.
use mamba_example::{
    rms_norm, selective_state_update, version, Context, StepInputs, Tensor, TensorMut,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("libmamba {}", version());
    let ctx = Context::cpu(0)?;

    let (rows, hidden) = (2usize, 4usize);
    let x: Vec<f32> = (0..rows * hidden).map(|i| i as f32 - 3.5).collect();
    let w = vec![1.0f32, 0.5, 2.0, 1.5];
    let mut y = vec![0.0f32; rows * hidden];
    let shape = [rows as i64, hidden as i64];
    rms_norm(
        &ctx,
        &Tensor::new(&x, &shape)?,
        &Tensor::new(&w, &[hidden as i64])?,
        &mut TensorMut::new(&mut y, &shape)?,
        1e-5,
    )?;
    println!("rms_norm: {y:?}");

    // Three decode steps of a one-sequence, two-channel, two-state scan.
    let (dim, dstate) = (2i64, 2i64);
    let a = [-1.0f32, -2.0, -0.5, -1.5];
    let mut state = vec![0.0f32; (dim * dstate) as usize];
    for (t, token) in [[0.5f32, -1.0], [1.0, 0.25], [-0.5, 2.0]]
        .iter()
        .enumerate()
    {
        let dt = [0.1f32 * (t as f32 + 1.0), 0.2];
        let b = [1.0f32, 0.5];
        let c = [0.5f32, 1.0];
        let mut out = [0.0f32; 2];
        let (x, dt_t, a_t) = (
            Tensor::new(token, &[1, dim])?,
            Tensor::new(&dt, &[1, dim])?,
            Tensor::new(&a, &[dim, dstate])?,
        );
        let (b_t, c_t) = (
            Tensor::new(&b, &[1, 1, dstate])?,
            Tensor::new(&c, &[1, 1, dstate])?,
        );
        let inputs = StepInputs {
            x: &x,
            dt: &dt_t,
            a: &a_t,
            b: &b_t,
            c: &c_t,
            d: None,
            z: None,
            dt_bias: None,
            dt_softplus: false,
        };
        selective_state_update(
            &ctx,
            &mut TensorMut::new(&mut state, &[1, dim, dstate])?,
            &inputs,
            &mut TensorMut::new(&mut out, &[1, dim])?,
        )?;
        println!("step {t}: y = {out:?}");
    }

    // A weight of the wrong length: libmamba refuses the call and says which argument is wrong.
    let long = vec![1.0f32; hidden + 1];
    let err = rms_norm(
        &ctx,
        &Tensor::new(&x, &shape)?,
        &Tensor::new(&long, &[hidden as i64 + 1])?,
        &mut TensorMut::new(&mut y, &shape)?,
        1e-5,
    )
    .expect_err("a weight of the wrong shape must fail");
    println!("expected error: {err}");
    Ok(())
}
