//! Two Python clients against the broker: kafka-python (its own protocol implementation) and
//! confluent-kafka (librdkafka). The checks themselves live in `tests/python/smoke.py`.
//!
//! The modules come from PyPI (`.ci/run` installs them). Without them this test fails with a
//! message saying how to install them, rather than passing without having tested anything.

mod common;

use std::process::Command;

use common::Broker;

#[test]
fn kafka_python_and_confluent_kafka_produce_and_consume() {
    let broker = Broker::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/smoke.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(&python)
        .arg(script)
        .arg(broker.bootstrap())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; install Python 3 or set PYTHON"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(3),
        "{stderr}\n(the Python client modules are missing: run the README's test command, .ci/run, \
         which installs them with pip)"
    );
    assert!(
        output.status.success(),
        "smoke.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("kafka-python: ok"), "{stdout}");
    assert!(stdout.contains("confluent-kafka: ok"), "{stdout}");
}
