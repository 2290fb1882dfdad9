//! (placeholder until the logger lands; same signature)
use std::path::PathBuf;
pub enum LogFormat {
    Text,
    Json,
}
pub enum LogTarget {
    Stderr,
    File(PathBuf),
}
#[derive(Debug)]
pub struct LoggingError;
pub fn init(_level: log::LevelFilter, _format: LogFormat, _target: LogTarget) -> Result<(), LoggingError> {
    Ok(())
}
