// Links libmamba: the directory in MAMBA_LIB_DIR (a build tree's lib/ or an install prefix's lib/), else what
// `pkg-config --libs mamba` names. The directory also goes into the binaries' run path, so tests and the example
// find the library without LD_LIBRARY_PATH.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MAMBA_LIB_DIR");
    let dir = match env::var("MAMBA_LIB_DIR") {
        Ok(dir) => dir,
        Err(_) => {
            let out = Command::new("pkg-config")
                .args(["--variable=libdir", "mamba"])
                .output()
                .expect("libmamba not found: set MAMBA_LIB_DIR to the directory of libmamba.so, or install it where pkg-config finds mamba.pc");
            if !out.status.success() {
                panic!("libmamba not found: set MAMBA_LIB_DIR, or install it where pkg-config finds mamba.pc");
            }
            String::from_utf8(out.stdout)
                .expect("pkg-config printed UTF-8")
                .trim()
                .to_string()
        }
    };
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-lib=dylib=mamba");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
