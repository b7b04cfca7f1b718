//! How a queue or a pipe end travels to another process, or is opened again in this one: the
//! environment variables the library's `share_with` and `hand_over` set for a child, read back with [`Inherit`],
//! and set in this process's own environment around the library's `from_env`.

use crate::errors::os_error;
use crate::fd::fd_is_open;
use crate::locks::gil_lock;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::os::fd::RawFd;
use std::process::Command;
use std::sync::Mutex;

/// The key under which handles travel through the environment (see [`Inherit`]).
pub(crate) const KEY: &str = "PYSHMQ";

/// Serialises the calls that set shmq's variables in this process's environment.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// How a handle travels: the variables `share_with` and `hand_over` set for a child (their names and values, one
/// of them the descriptor's number), and the key `from_env` finds them under.
#[derive(Clone, Debug)]
pub(crate) struct Inherit {
    key: String,
    /// The variable that holds the descriptor's number.
    fd_var: String,
    /// The other variables (a pipe end's identity), passed on verbatim.
    pub(crate) extras: Vec<(String, String)>,
}

impl Inherit {
    /// Reads what `share_with` or `hand_over` wrote into `cmd` (never spawned): the descriptor and the rest.
    pub(crate) fn capture(cmd: &Command) -> PyResult<(Inherit, RawFd)> {
        let mut fd = None;
        let mut extras = Vec::new();
        for (name, value) in cmd.get_envs() {
            let (Some(name), Some(value)) = (name.to_str(), value.and_then(|v| v.to_str())) else { continue };
            match value.parse::<RawFd>() {
                Ok(n) if fd.is_none() && fd_is_open(n) => fd = Some((name.to_owned(), n)),
                _ => extras.push((name.to_owned(), value.to_owned())),
            }
        }
        let (fd_var, n) = fd.ok_or_else(|| os_error("shmq did not name the segment's descriptor"))?;
        Ok((Inherit { key: KEY.to_owned(), fd_var, extras }, n))
    }

    /// Runs `open` with the variables set as `share_with` or `hand_over` set them for a child, but naming
    /// descriptor `fd` of this process; restores the environment afterwards.
    pub(crate) fn with_env<T>(&self, fd: RawFd, open: impl FnOnce(&str) -> T) -> T {
        let _g = gil_lock(&ENV_LOCK);
        let mut vars = vec![(self.fd_var.clone(), fd.to_string())];
        vars.extend(self.extras.iter().cloned());
        let saved: Vec<_> = vars.iter().map(|(k, _)| (k.clone(), std::env::var_os(k))).collect();
        for (k, v) in &vars {
            std::env::set_var(k, v);
        }
        let r = open(&self.key);
        for (k, old) in saved {
            match old {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
        r
    }

    pub(crate) fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (self.key.clone(), self.fd_var.clone(), self.extras.clone()).into_pyobject(py)
    }

    pub(crate) fn from_py(t: &Bound<'_, PyAny>) -> PyResult<Inherit> {
        let (key, fd_var, extras): (String, String, Vec<(String, String)>) = t.extract()?;
        Ok(Inherit { key, fd_var, extras })
    }
}
