//! Optional peers behind the CLI's cargo features: ipc-channel and iceoryx2.

#[allow(unused_imports)]
use super::*;

// ----- ipc-channel (servo's cross-process channels), behind the `ipc-channel` feature -----

#[cfg(feature = "ipc-channel")]
pub(super) const IPC_SERVER_ENV: &str = "SHMQ_BENCH_IPC_SERVER";

/// The channel pair the child hands back: how the parent sends to it, and how it hears back.
#[cfg(feature = "ipc-channel")]
type IpcPair = (ipc_channel::ipc::IpcSender<u64>, ipc_channel::ipc::IpcReceiver<u64>);

#[cfg(feature = "ipc-channel")]
pub fn ipc_channel_row(ctx: &Ctx) -> Result<Measured, RowError> {
    use ipc_channel::ipc::IpcOneShotServer;
    use std::cell::RefCell;
    let (server, name) =
        IpcOneShotServer::<IpcPair>::new().map_err(|e| RowError::Failed(format!("ipc-channel server: {e}")))?;
    let chans: RefCell<Option<IpcPair>> = RefCell::new(None);
    run_pingpong(
        ctx,
        ctx.child_spec("ipc-channel"),
        |cmd| {
            cmd.env(IPC_SERVER_ENV, &name);
        },
        || {
            // The child connects and sends its channel ends (bounded: the watchdog kills it).
            if let Ok((_, pair)) = server.accept() {
                *chans.borrow_mut() = Some(pair);
            }
        },
        None,
        |_, i| {
            let guard = chans.borrow();
            let (tx, rx) = guard.as_ref().ok_or("the ipc-channel child did not connect")?;
            tx.send(i).map_err(|e| e.to_string())?;
            match rx.recv() {
                Ok(v) if v == i => Ok(()),
                Ok(v) => Err(format!("round {i}: echo carried {v}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
}

#[cfg(feature = "ipc-channel")]
pub(super) fn ipc_channel_child(a: &ChildArgs) -> Result<(), String> {
    use ipc_channel::ipc::{channel, IpcSender};
    let name = std::env::var(IPC_SERVER_ENV).map_err(|_| "no ipc-channel server name".to_string())?;
    let bootstrap = IpcSender::<IpcPair>::connect(name).map_err(|e| e.to_string())?;
    let (to_child, from_parent) = channel::<u64>().map_err(|e| e.to_string())?;
    let (to_parent, from_child) = channel::<u64>().map_err(|e| e.to_string())?;
    bootstrap.send((to_child, from_child)).map_err(|e| e.to_string())?;
    for _ in 0..a.rounds {
        let v = from_parent.recv().map_err(|e| e.to_string())?;
        to_parent.send(v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

// ----- iceoryx2 (zero-copy publish-subscribe), behind the `iceoryx2` feature -----

#[cfg(feature = "iceoryx2")]
pub(super) const ICEORYX_SERVICE_ENV: &str = "SHMQ_BENCH_ICEORYX2_SERVICE";

/// One side of an iceoryx2 ping-pong: a node, a publisher on one service and a subscriber on the
/// other (the services "<prefix>/ping" and "<prefix>/pong", `u64` payloads).
#[cfg(feature = "iceoryx2")]
pub(super) struct Iceoryx {
    publisher: iceoryx2::port::publisher::Publisher<iceoryx2::service::ipc::Service, u64, ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<iceoryx2::service::ipc::Service, u64, ()>,
    _node: iceoryx2::node::Node<iceoryx2::service::ipc::Service>,
}

#[cfg(feature = "iceoryx2")]
impl Iceoryx {
    /// Side A publishes on "ping" and subscribes to "pong"; side B the other way round.
    fn open(prefix: &str, side_a: bool) -> Result<Iceoryx, String> {
        use iceoryx2::prelude::*;
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| format!("iceoryx2 node: {e:?}"))?;
        let service = |suffix: &str| {
            let name: ServiceName =
                format!("{prefix}/{suffix}").as_str().try_into().map_err(|e| format!("iceoryx2 name: {e:?}"))?;
            node.service_builder(&name)
                .publish_subscribe::<u64>()
                .open_or_create()
                .map_err(|e| format!("iceoryx2 service {suffix}: {e:?}"))
        };
        let (out, inp) = if side_a { ("ping", "pong") } else { ("pong", "ping") };
        let (out, inp) = (service(out)?, service(inp)?);
        let subscriber = inp.subscriber_builder().create().map_err(|e| format!("iceoryx2 subscriber: {e:?}"))?;
        let publisher = out.publisher_builder().create().map_err(|e| format!("iceoryx2 publisher: {e:?}"))?;
        Ok(Iceoryx { publisher, subscriber, _node: node })
    }

    fn send(&self, v: u64) -> Result<(), String> {
        self.publisher.send_copy(v).map(drop).map_err(|e| format!("iceoryx2 send: {e:?}"))
    }

    /// The next sample's value, if one has arrived.
    fn try_recv(&self) -> Result<Option<u64>, String> {
        match self.subscriber.receive() {
            Ok(s) => Ok(s.map(|s| *s)),
            Err(e) => Err(format!("iceoryx2 receive: {e:?}")),
        }
    }
}

/// Busy-polling ping-pong over two iceoryx2 publish-subscribe services. A sample published
/// before the peer's subscriber exists reaches nobody, so side A first says hello (value 0)
/// until side B answers; stray hello answers are skipped by the timed rounds (values from 1).
#[cfg(feature = "iceoryx2")]
pub fn iceoryx2_row(ctx: &Ctx) -> Result<Measured, RowError> {
    // iceoryx2 leaves machine-wide management files in /dev/shm (`iox2_*`) after its last node
    // goes. Remove those this row created, so that a run leaves /dev/shm as it found it.
    let iox_files = || -> std::collections::BTreeSet<std::ffi::OsString> {
        std::fs::read_dir("/dev/shm")
            .map(|d| d.flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with("iox2_")).collect())
            .unwrap_or_default()
    };
    let before = iox_files();
    let result = iceoryx2_pingpong(ctx);
    for name in iox_files().difference(&before) {
        let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
    }
    result
}

#[cfg(feature = "iceoryx2")]
pub(super) fn iceoryx2_pingpong(ctx: &Ctx) -> Result<Measured, RowError> {
    let prefix = format!("shmq-bench/{}/{}", std::process::id(), ctx.rounds);
    let me = Iceoryx::open(&prefix, true).map_err(RowError::Failed)?;
    let connected = std::cell::Cell::new(false);
    run_pingpong(
        ctx,
        ctx.child_spec("iceoryx2"),
        |cmd| {
            cmd.env(ICEORYX_SERVICE_ENV, &prefix);
        },
        || {},
        None,
        |abort, i| {
            while !connected.get() {
                me.send(0)?;
                let t = Instant::now();
                let mut got = None;
                spin_until(abort, || {
                    got = me.try_recv().transpose();
                    got.is_some() || t.elapsed() > Duration::from_millis(10)
                })?;
                if let Some(v) = got {
                    v?;
                    connected.set(true);
                }
            }
            me.send(i + 1)?;
            let mut out = Ok(());
            spin_until(abort, || match me.try_recv() {
                Ok(Some(v)) if v == i + 1 => true,
                Ok(_) => false,
                Err(e) => {
                    out = Err(e);
                    true
                }
            })?;
            out
        },
    )
}

#[cfg(feature = "iceoryx2")]
pub(super) fn iceoryx2_child(a: &ChildArgs, dl: Deadline) -> Result<(), String> {
    let prefix = std::env::var(ICEORYX_SERVICE_ENV).map_err(|_| "no iceoryx2 service name".to_string())?;
    let me = Iceoryx::open(&prefix, false)?;
    let mut answered = 0;
    while answered < a.rounds {
        let mut got = Ok(None);
        dl.spin_until(|| {
            got = me.try_recv();
            !matches!(got, Ok(None))
        })?;
        let v = got?.unwrap_or(0);
        me.send(v)?;
        if v != 0 {
            answered += 1;
        }
    }
    Ok(())
}
