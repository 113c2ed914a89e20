//! Client settings, under Kafka's names where Kafka has one.

use std::time::Duration;

use crate::error::{Error, Result};

/// Settings shared by every part of the client (admin, producer, consumer).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` addresses tried, in order, until one answers.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent with every request; brokers log it and use it for quotas.
    pub client_id: String,
    /// `request.timeout.ms`: how long one request may wait for its response.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: how long a TCP connect may take.
    pub connect_timeout: Duration,
    /// `default.api.timeout.ms`: the budget of one operation, retries included.
    pub api_timeout: Duration,
    /// `retry.backoff.ms`: the first pause before a retry; it doubles on each attempt.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest pause between retries.
    pub retry_backoff_max: Duration,
    /// `metadata.max.age.ms`: cached metadata older than this is refreshed before use.
    pub metadata_max_age: Duration,
    /// `allow.auto.create.topics`: whether metadata requests let the broker create a topic
    /// that does not exist (if the broker itself allows it).
    pub allow_auto_topic_creation: bool,
    /// Responses larger than this are refused (the connection is closed).
    pub max_response_bytes: usize,
}

impl ClientConfig {
    /// Defaults (Kafka's), with `bootstrap` as a comma-separated `host:port` list.
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            client_id: "millrace-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            api_timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            allow_auto_topic_creation: false,
            max_response_bytes: 256 * 1024 * 1024,
        }
    }

    /// Sets one setting by its Kafka name. Returns `Ok(false)` for a name that is not a client
    /// setting (so a producer or consumer config can try its own), an error for a bad value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = ClientConfig::new(value).bootstrap_servers
            }
            "client.id" => self.client_id = value.to_string(),
            "request.timeout.ms" => self.request_timeout = millis(key, value)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = millis(key, value)?,
            "default.api.timeout.ms" => self.api_timeout = millis(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(key, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis(key, value)?,
            "allow.auto.create.topics" => self.allow_auto_topic_creation = boolean(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::Config {
                key: "bootstrap.servers".into(),
                reason: "no address given".into(),
            });
        }
        for server in &self.bootstrap_servers {
            if !server.contains(':') {
                return Err(Error::Config {
                    key: "bootstrap.servers".into(),
                    reason: format!("`{server}` is not host:port"),
                });
            }
        }
        Ok(())
    }
}

/// Parses a millisecond count.
pub(crate) fn millis(key: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| Error::Config {
            key: key.into(),
            reason: format!("`{value}` is not a number of milliseconds"),
        })
}

/// Parses `true`/`false`.
pub(crate) fn boolean(key: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Config {
            key: key.into(),
            reason: format!("`{value}` is not true or false"),
        }),
    }
}

/// Parses a number of the given type.
pub(crate) fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value.trim().parse::<T>().map_err(|_| Error::Config {
        key: key.into(),
        reason: format!("`{value}` is not a valid number here"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_set_fields_and_unknown_names_are_left_to_the_caller() {
        let mut c = ClientConfig::new("a:1, b:2,");
        assert_eq!(c.bootstrap_servers, ["a:1", "b:2"]);
        assert!(c.set("request.timeout.ms", "1500").expect("valid"));
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert!(!c.set("linger.ms", "5").expect("not a client key"));
        assert!(c.set("retry.backoff.ms", "soon").is_err());
        assert!(ClientConfig::new("nohost").validate().is_err());
    }
}
