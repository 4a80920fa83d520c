//! `scripts/cleanup-env` against moto. The script is Python (boto3, which
//! moto brings) so that ops can run it anywhere; its tests are too
//! (`tests/cleanup/test_cleanup_env.py`), and this runs them inside
//! `cargo test` so they count like every other test.

use prism_e2e::wasm::ROOT;

#[test]
fn cleanup_env_deletes_a_half_built_environment_and_nothing_else() {
    let Some(ep) = prism_e2e::aws::endpoint() else {
        return;
    };
    let o = std::process::Command::new("python3")
        .arg("tests/cleanup/test_cleanup_env.py")
        .current_dir(ROOT)
        .env("PRISM_TEST_AWS_ENDPOINT", ep)
        .output()
        .expect("running python3");
    let (out, err) = crate::text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("Ran 2 tests") && err.contains("OK"), "{err}");
}
