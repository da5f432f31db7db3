//! Placeholder until the netns classification lands.
#![allow(missing_docs)]
use std::path::Path;
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Enterable,
    Stale,
    Held,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    pub mount_ns: String,
    pub unit: Option<String>,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub path: String,
    pub class: Class,
    pub holders: Vec<Holder>,
    pub container: Option<ContainerRef>,
}
pub fn classify_dir(_p: &Path, _d: &str, _c: &[crate::docker::Container]) -> Vec<Entry> {
    vec![]
}
pub fn restart_advice(_e: &[Entry]) -> Option<String> {
    None
}
