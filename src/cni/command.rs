//! ADD, DEL, CHECK, GC and STATUS: build the daemon request, send it, turn the reply into
//! the CNI answer.
//!
//! Owns: which request each command sends and how replies map to results and errors.
//! DEL while the daemon is unreachable fails with code 11 so that the runtime retries it
//! (succeeding would leak the address until a GC that a pre-1.1 runtime never sends; the
//! reference fails too). Must not: retry (the runtime does, on 11), print, or open the
//! socket itself (the [`Daemon`] does, so tests can stand in for it).

use std::path::Path;
use std::time::Duration;

use log::{debug, info, warn};
use serde_json::Value;

use super::args;
use super::config::{self, IpamConf, NetConf};
use super::env::{AttachmentEnv, Env};
use super::error::{CniError, Unavailable};
use super::result;
use super::version::Version;
use crate::protocol::client::{self, ClientError};
use crate::protocol::{
    AllocateRequest, CheckRequest, GcRequest, ReleaseRequest, Reply, Request, Response, StatusRequest,
};

/// Something that answers protocol requests: the real socket, or a test double.
pub trait Daemon {
    fn call(&self, socket: &Path, request: Request, timeout: Duration) -> Result<Response, ClientError>;
}

/// The `ipam-node` daemon behind its unix socket.
pub struct SocketDaemon;

impl Daemon for SocketDaemon {
    fn call(&self, socket: &Path, request: Request, timeout: Duration) -> Result<Response, ClientError> {
        client::call(socket, request, timeout)
    }
}

/// A validated call, shared by the commands.
pub struct Call<'a> {
    /// `cniVersion` exactly as the request sent it (results echo it).
    pub cni_version: &'a str,
    pub version: Version,
    pub network: &'a str,
    pub ipam: &'a IpamConf,
    /// The decoded stdin (ADD, CHECK and GC read more of it).
    pub config: &'a NetConf<'a>,
    pub daemon: &'a dyn Daemon,
}

impl Call<'_> {
    /// Sends `request`; an error reply becomes [`CniError::Refused`].
    fn ask(&self, request: Request) -> Result<Reply, CniError> {
        let op = request.op_name();
        debug!("request op={op} network={} socket={}", self.network, self.ipam.daemon_socket.display());
        match self.daemon.call(&self.ipam.daemon_socket, request, self.ipam.call_timeout) {
            Ok(Response::Ok(reply)) => Ok(reply),
            Ok(Response::Error(reply)) => Err(CniError::Refused { op, reply }),
            Err(e) => Err(CniError::Daemon(e)),
        }
    }
}

/// ADD: allocate (idempotent in the daemon) and print the result.
pub fn add(call: &Call<'_>, att: &AttachmentEnv, env: &Env) -> Result<Value, CniError> {
    let cni_args = args::parse(env.get("CNI_ARGS").unwrap_or_default())?;
    for (key, value) in &cni_args.ignored {
        warn!("ignoring CNI_ARGS {key}={value:?}: not a Kubernetes name; the pod is recorded without it");
    }
    let params = config::add_params(call.config, &cni_args)?;
    let request = Request::Allocate(AllocateRequest {
        network: call.network.to_string(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        pools: call.ipam.pools.clone(),
        pool_type: call.ipam.pool_type,
        requested_ips: params.requested_ips,
        allocate_default_gateway: params.allocate_default_gateway,
        allocate_ip_with_index: params.allocate_ip_with_index,
        pod: cni_args.pod,
        device_id: params.device_id,
    });
    let reply = call.ask(request)?;
    if reply.allocations.len() != call.ipam.pools.len() {
        return Err(CniError::BadReply {
            op: "allocate",
            problem: "the reply has not one allocation per pool",
        });
    }
    let ips: Vec<String> = reply.allocations.iter().map(|a| a.ip.to_string()).collect();
    info!(
        "allocated network={} container={} ifname={} ips={}",
        call.network,
        att.container_id,
        att.ifname,
        ips.join(",")
    );
    let result = result::IpamResult::from_allocations(&reply.allocations);
    result::render(call.cni_version, call.version.result_shape(), &result).map_err(CniError::Convert)
}

/// DEL: release; succeeds when nothing is reserved (the daemon's rule).
pub fn del(call: &Call<'_>, att: &AttachmentEnv) -> Result<(), CniError> {
    let request = Request::Release(ReleaseRequest {
        network: call.network.to_string(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        pools: call.ipam.pools.clone(),
        pool_type: call.ipam.pool_type,
    });
    // A failure is logged once, with its code, where the outcome is made (cni::run_with).
    let reply = call.ask(request)?;
    info!(
        "released network={} container={} ifname={} count={}",
        call.network,
        att.container_id,
        att.ifname,
        reply.released.unwrap_or(0)
    );
    Ok(())
}

/// CHECK: the daemon confirms the reservation exists and holds exactly prevResult's addresses.
pub fn check(call: &Call<'_>, att: &AttachmentEnv) -> Result<(), CniError> {
    let ips = config::prev_result_ips(call.config, call.version)?;
    let request = Request::Check(CheckRequest {
        network: call.network.to_string(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        pools: call.ipam.pools.clone(),
        pool_type: call.ipam.pool_type,
        ips,
    });
    call.ask(request).map(|_| ())
}

/// GC: release this network's reservations whose attachment is not in the valid list.
pub fn gc(call: &Call<'_>) -> Result<(), CniError> {
    let valid_attachments = config::valid_attachments(call.config)?;
    let keep = valid_attachments.len();
    let reply = call.ask(Request::Gc(GcRequest { network: call.network.to_string(), valid_attachments }))?;
    info!("gc network={} kept_listed={keep} released={}", call.network, reply.released.unwrap_or(0));
    Ok(())
}

/// STATUS: can an ADD succeed now? Every failure is code 50 (informational to the runtime).
pub fn status(call: &Call<'_>) -> Result<(), CniError> {
    let request =
        Request::Status(StatusRequest { pools: call.ipam.pools.clone(), pool_type: call.ipam.pool_type });
    let reply = match call.ask(request) {
        Ok(reply) => reply,
        Err(CniError::Daemon(e)) => return Err(CniError::NotAvailable(Unavailable::Daemon(e))),
        Err(CniError::Refused { reply, .. }) => {
            return Err(CniError::NotAvailable(Unavailable::Refused(reply)));
        }
        Err(e) => return Err(e),
    };
    for pool in &call.ipam.pools {
        match reply.pools.iter().find(|p| &p.pool == pool) {
            None => return Err(CniError::NotAvailable(Unavailable::PoolMissing { pool: pool.clone() })),
            Some(p) if p.free == 0 => {
                return Err(CniError::NotAvailable(Unavailable::Exhausted { pool: pool.clone() }));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
