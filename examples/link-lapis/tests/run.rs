//! Runs the example binary as a user would and checks it succeeds (it verifies its own
//! results: the Laplace operator against brute force, Σp = k, a falling loss, an identical
//! checkpoint round trip).

#[test]
fn example_runs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_link-lapis"))
        .output()
        .expect("run link-lapis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "link-lapis exited {:?}", out.status);
    assert!(stdout.contains("checkpoint:") && stdout.contains("identical"));
}
