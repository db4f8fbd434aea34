//! A service embedding cohost: load a model repository, serve inferences in-process.
//! Starting, loading and shutting down block (threads, weights), so an async service
//! uses their async forms, which run them off the executor.
//!
//! `cargo run -p cohost-runtime --example embedded [REPOSITORY]` (without a folder it
//! generates a tiny DLRM repository into a temporary folder first).
use cohost_runtime::{InferRequest, Runtime, RuntimeOptions, Tensor, TensorData};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            let dir = std::env::temp_dir().join("cohost-embedded-example");
            let out = dir.clone();
            // Writing the weights blocks too: off the executor like the rest.
            tokio::task::spawn_blocking(move || {
                cohost_models::synth::generate(&out, "dlrm-tiny", 1, 42, None, &mut |_, _| {})
            })
            .await??;
            dir
        }
    };
    let runtime = Runtime::start(RuntimeOptions::default().repository(repo)).await?;
    for (model, err) in runtime.load_all_async().await {
        eprintln!("{model}: {err}");
    }
    for status in runtime.models() {
        let meta = runtime.metadata(&status.name, Some(status.version))?;
        // One request of 2 rows: zeros for float inputs, index 0 for integer inputs.
        let inputs = meta
            .inputs
            .iter()
            .map(|spec| {
                let width: i64 = spec.dims[1..].iter().product();
                let n = 2 * width as usize;
                let data = match spec.datatype {
                    cohost_runtime::DataType::FP32 => TensorData::F32(vec![0.5; n]),
                    _ => TensorData::I64(vec![0; n]),
                };
                Tensor::new(&spec.name, vec![2, width], data)
            })
            .collect();
        let request = InferRequest {
            inputs,
            ..Default::default()
        };
        let response = runtime.infer(&status.name, None, request).await?;
        for out in &response.outputs {
            println!(
                "{} v{}: {} = {:?}",
                status.name, response.model_version, out.name, out.data
            );
        }
        println!("load: {:?}", response.load);
    }
    runtime.shutdown_async().await;
    Ok(())
}
