//! serde messages (feature `serde`): any `Serialize` value, encoded with postcard. `Pod` values
//! through `put_value` / `get_value` remain the fast path; this is the convenient one, like
//! Python's pickling queues.
//!
//! A value is encoded into a scratch buffer of the calling thread (reused: no allocation once it
//! is large enough), so its size is known before anything waits for room; it is decoded from the
//! owned copy of the message, never from shared memory, and must use every byte of it.

use crate::pipe::{Connection, Receiver, Sender};
use crate::queue::Queue;
use crate::{RecvError, SendError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::Cell;

thread_local! {
    /// The calling thread's encoding buffer (taken out while in use).
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Encodes `value` into the thread's scratch buffer and hands the bytes to `send`.
fn with_encoded<T: Serialize + ?Sized>(
    value: &T,
    send: impl FnOnce(&[u8]) -> Result<(), SendError>,
) -> Result<(), SendError> {
    let mut buf = SCRATCH.take();
    buf.clear();
    let result = match postcard::to_extend(value, buf) {
        Ok(bytes) => {
            let r = send(&bytes);
            buf = bytes;
            r
        }
        Err(e) => {
            buf = Vec::new();
            Err(SendError::Encode(e.to_string()))
        }
    };
    SCRATCH.set(buf);
    result
}

/// Decodes a whole message as `T`: bytes left over are an error, not ignored.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecvError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(RecvError::Decode(format!("{} bytes left over after the value", rest.len()))),
        Err(e) => Err(RecvError::Decode(e.to_string())),
    }
}

impl Queue {
    /// Puts any serde value, blocking while the queue is full. A value whose encoding does not fit
    /// a slot is refused with `TooLarge` at once, before any wait.
    pub fn put_serde<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        with_encoded(value, |bytes| self.put(bytes))
    }

    /// As [`Queue::put_serde`], but `Full` instead of blocking.
    pub fn try_put_serde<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        with_encoded(value, |bytes| self.try_put(bytes))
    }

    /// Takes a message and decodes it as `T`, blocking while the queue is empty. A message that
    /// does not decode (or has bytes left over) is consumed and reported as `Decode`.
    pub fn get_serde<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(&self.get()?)
    }

    /// As [`Queue::get_serde`], but `Empty` instead of blocking.
    pub fn try_get_serde<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(&self.try_get()?)
    }
}

impl Sender {
    /// Sends any serde value, blocking while the pipe is full. An encoding larger than a slot is
    /// split across slots as [`Sender::send`] does.
    pub fn send_serde<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        with_encoded(value, |bytes| self.send(bytes))
    }
}

impl Receiver {
    /// Receives a message and decodes it as `T`, blocking while the pipe is empty. A message that
    /// does not decode (or has bytes left over) is consumed and reported as `Decode`.
    pub fn recv_serde<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        decode(&self.recv()?)
    }
}

impl Connection {
    /// See [`Sender::send_serde`].
    pub fn send_serde<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        self.sender().ok_or(SendError::WrongRole)?.send_serde(value)
    }

    /// See [`Receiver::recv_serde`].
    pub fn recv_serde<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.receiver().ok_or(RecvError::WrongRole)?.recv_serde()
    }
}
