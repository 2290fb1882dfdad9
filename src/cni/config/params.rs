//! What one command reads beyond the pools: ADD's static IPs, gateway, index and device ID,
//! CHECK's `prevResult` addresses, GC's list of attachments to keep.
//!
//! ```text
//! ADD    static IPs = runtimeConfig.ips | args.cni.ips | CNI_ARGS IP=   (first non-empty source)
//!        args.cni.allocateDefaultGateway, args.cni.allocateIPWithIndex
//!        deviceID = top-level deviceID | runtimeConfig.deviceID
//! CHECK  prevResult.ips[].address                  (prevResult of 0.3.0 and later)
//!        prevResult.ip4.ip, prevResult.ip6.ip       (prevResult of 0.1.0, 0.2.0)
//! GC     cni.dev/valid-attachments | cni.dev/attachments (legacy)
//! ```
//!
//! Owns: those fields, each read only by its command (a DEL never fails over a parameter it
//! does not use). Must not: keep more of a list than its typed result (items are read one at a
//! time from the input; no list of strings or values is built on the way).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::value::RawValue;

use super::ipam::args_cni_members;
use super::json::{self, NotAnObject};
use super::stdin::NetConf;
use super::{ConfigError, echo, not_an_object, opt_bool, opt_int, opt_str};
use crate::cni::args::{self, CniArgs};
use crate::cni::version::{ResultShape, Version};
use crate::protocol::Attachment;

/// What an ADD asks for beyond the attachment and pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddParams {
    pub requested_ips: Vec<IpAddr>,
    pub allocate_default_gateway: bool,
    pub allocate_ip_with_index: Option<u32>,
    pub device_id: Option<String>,
}

/// Reads the ADD-only fields. Kept out of the other commands so that a DEL never fails
/// over a request parameter it does not use.
pub fn add_params(conf: &NetConf<'_>, cni_args: &CniArgs) -> Result<AddParams, ConfigError> {
    // runtimeConfig of another shape is ignored, like args: the runtime fills it, not the tenant.
    let [runtime_ips, runtime_device_id] = conf
        .runtime_config
        .and_then(|r| json::members(r.get(), &["ips", "deviceID"]).ok())
        .unwrap_or_default();
    let [cni_ips, gateway, index] =
        args_cni_members(conf, &["ips", "allocateDefaultGateway", "allocateIPWithIndex"]).unwrap_or_default();

    let mut requested_ips = ip_list(runtime_ips, "runtimeConfig.ips")?;
    if requested_ips.is_empty() {
        requested_ips = ip_list(cni_ips, "args.cni.ips")?;
    }
    if requested_ips.is_empty() {
        requested_ips = cni_args.ips.clone();
    }

    let allocate_default_gateway =
        opt_bool(gateway, || "args.cni.allocateDefaultGateway".into())?.unwrap_or(false);
    let allocate_ip_with_index = match opt_int(index, || "args.cni.allocateIPWithIndex".into())? {
        None => None,
        Some(v) => Some(
            u32::try_from(v)
                .ok()
                .filter(|&i| i <= i32::MAX as u32)
                .ok_or(ConfigError::IndexOutOfRange { value: v })?,
        ),
    };
    if allocate_default_gateway && !requested_ips.is_empty() {
        return Err(ConfigError::DefaultGatewayWithStaticIps);
    }
    if allocate_default_gateway && allocate_ip_with_index.is_some() {
        return Err(ConfigError::DefaultGatewayWithIndex);
    }

    // The reference reads the top-level deviceID (multus puts it there for SR-IOV); the
    // `deviceID` capability puts it under runtimeConfig.
    let device_id = match opt_str(conf.device_id, || "deviceID".into())? {
        Some(d) if !d.is_empty() => Some(d),
        _ => opt_str(runtime_device_id, || "runtimeConfig.deviceID".into())?.filter(|d| !d.is_empty()),
    };
    Ok(AddParams { requested_ips, allocate_default_gateway, allocate_ip_with_index, device_id })
}

/// A list of strings, each an IP address (`<ip>` or `<ip>/<len>`). Every item's type is checked
/// before any address counts (a later non-string wins over an earlier bad address), as when
/// the list was collected first; addresses are parsed as they are read, no string is kept.
fn ip_list(raw: Option<&RawValue>, field: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let not_strings = || ConfigError::WrongType { field: field.into(), expected: "a list of strings" };
    let (mut list, mut bad_ip, mut all_strings) = (Vec::new(), None, true);
    json::items(raw, |i, item| {
        match json::string(item) {
            None => all_strings = false,
            Some(_) if bad_ip.is_some() => {}
            Some(s) => match args::parse_ip(s.trim()) {
                Some(ip) => list.push(ip),
                None => {
                    bad_ip =
                        Some(ConfigError::BadStaticIp { field: format!("{field}[{i}]"), value: echo(&s) })
                }
            },
        }
        all_strings
    })
    .map_err(|json::NotAList| not_strings())?;
    match (all_strings, bad_ip) {
        (false, _) => Err(not_strings()),
        (true, Some(e)) => Err(e),
        (true, None) => Ok(list),
    }
}

/// GC's list of attachments to keep: `cni.dev/valid-attachments`, or the legacy
/// `cni.dev/attachments` when only that is present. The first bad entry is the error.
pub fn valid_attachments(conf: &NetConf<'_>) -> Result<Vec<Attachment>, ConfigError> {
    let (key, raw) = match (conf.valid_attachments, conf.attachments) {
        (Some(raw), _) => ("cni.dev/valid-attachments", raw),
        (None, Some(raw)) => ("cni.dev/attachments", raw),
        (None, None) => return Err(ConfigError::MissingAttachments),
    };
    let (mut list, mut problem) = (Vec::new(), None);
    json::items(raw, |i, item| {
        match attachment(item, || format!("{key}[{i}]")) {
            Ok(a) => list.push(a),
            Err(e) => problem = Some(e),
        }
        problem.is_none()
    })
    .map_err(|json::NotAList| ConfigError::WrongType {
        field: key.into(),
        expected: "a list of {containerID, ifname}",
    })?;
    match problem {
        Some(e) => Err(e),
        None => Ok(list),
    }
}

/// One `{containerID, ifname}`; other keys are tolerated, a value of another type counts as
/// missing.
fn attachment(item: &RawValue, field: impl Fn() -> String) -> Result<Attachment, ConfigError> {
    let Ok([container_id, ifname]) = json::members(item.get(), &["containerID", "ifname"]) else {
        return Err(ConfigError::BadAttachment { field: field(), problem: "must be an object" });
    };
    let get = |raw: Option<&RawValue>| raw.and_then(json::string).filter(|s| !s.is_empty());
    match (get(container_id), get(ifname)) {
        (Some(container_id), Some(ifname)) => Ok(Attachment { container_id, ifname }),
        (None, _) => {
            Err(ConfigError::BadAttachment { field: field(), problem: "needs a non-empty containerID" })
        }
        (_, None) => Err(ConfigError::BadAttachment { field: field(), problem: "needs a non-empty ifname" }),
    }
}

/// The addresses of `prevResult` (CHECK), read in the layout of its version: its own
/// `cniVersion` when that is a version string, else the request's (the network config's).
/// libcni's `ParsePrevResult` instead always parses it in the layout of the config's
/// `cniVersion` (which also stands in for a missing one) and refuses a result whose own version
/// is of another layout. So the two read alike wherever libcni succeeds; a result of another
/// layout (a runtime's cached 0.2.0 result under a 0.4.0 config) is read here as written rather
/// than refused. 0.1.0/0.2.0: `ip4.ip` then `ip6.ip`; later: `ips[].address`. `prevResult` is the
/// main plugin's full result, so `interfaces`, `ips[].interface`, `version`, routes, DNS and
/// anything else is tolerated. The first bad address is the error.
pub fn prev_result_ips(conf: &NetConf<'_>, request: Version) -> Result<Vec<IpAddr>, ConfigError> {
    let prev = conf.prev_result.ok_or(ConfigError::MissingPrevResult)?;
    let [cni_version, ips, ip4, ip6] = json::members(prev.get(), &["cniVersion", "ips", "ip4", "ip6"])
        .map_err(|NotAnObject| not_an_object("prevResult"))?;
    let version = cni_version.and_then(json::string).and_then(|s| Version::parse(&s)).unwrap_or(request);
    match version.result_shape() {
        ResultShape::PerFamily => per_family_ips(ip4, ip6),
        ResultShape::VersionedIps | ResultShape::Ips => listed_ips(ips),
    }
}

/// `prevResult.ip4.ip` and `prevResult.ip6.ip`, each optional.
fn per_family_ips(ip4: Option<&RawValue>, ip6: Option<&RawValue>) -> Result<Vec<IpAddr>, ConfigError> {
    let mut list = Vec::new();
    for (key, family) in [("ip4", ip4), ("ip6", ip6)] {
        let Some(family) = family else { continue };
        let field = format!("prevResult.{key}");
        let [ip] = json::members(family.get(), &["ip"]).map_err(|NotAnObject| not_an_object(&field))?;
        let address = ip.and_then(json::string).unwrap_or_default();
        match address.parse::<IpNet>() {
            Ok(net) => list.push(net.addr()),
            Err(_) => {
                return Err(ConfigError::BadPrevResultAddress {
                    field: format!("{field}.ip"),
                    value: echo(&address),
                });
            }
        }
    }
    Ok(list)
}

/// `prevResult.ips[].address`.
fn listed_ips(ips: Option<&RawValue>) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(ips) = ips else { return Ok(Vec::new()) };
    let (mut list, mut problem) = (Vec::new(), None);
    json::items(ips, |i, entry| {
        // An entry that is no object, or has no string address, has the address "".
        let address = match json::members(entry.get(), &["address"]) {
            Ok([raw]) => raw.and_then(json::string).unwrap_or_default(),
            Err(NotAnObject) => String::new(),
        };
        match address.parse::<IpNet>() {
            Ok(net) => list.push(net.addr()),
            Err(_) => {
                let field = format!("prevResult.ips[{i}].address");
                problem = Some(ConfigError::BadPrevResultAddress { field, value: echo(&address) });
            }
        }
        problem.is_none()
    })
    .map_err(|json::NotAList| ConfigError::WrongType {
        field: "prevResult.ips".into(),
        expected: "a list",
    })?;
    match problem {
        Some(e) => Err(e),
        None => Ok(list),
    }
}

#[cfg(test)]
mod tests;
