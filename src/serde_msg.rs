//! serde messages (feature `serde`): any `Serialize` value, encoded with postcard straight into
//! the slot (no intermediate buffer) and decoded from the slot in place. `Pod` values through
//! `put_value` / `get_value` remain the fast path; this is the convenient one, like Python's
//! pickling queues.

use crate::pipe::{Connection, Receiver, Sender};
use crate::queue::Queue;
use crate::{RecvError, SendError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes `value` into `buf`; returns the encoded length.
fn encode<T: Serialize + ?Sized>(value: &T, buf: &mut [u8]) -> Result<usize, SendError> {
    match postcard::to_slice(value, buf) {
        Ok(used) => Ok(used.len()),
        Err(postcard::Error::SerializeBufferFull) => {
            // Slow path, for the error only: how large would it have been?
            let len = postcard::to_allocvec(value).map_or(usize::MAX, |v| v.len());
            Err(SendError::TooLarge { len, max: buf.len() })
        }
        Err(e) => Err(SendError::Encode(e.to_string())),
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecvError> {
    postcard::from_bytes(bytes).map_err(|e| RecvError::Decode(e.to_string()))
}

impl Queue {
    /// Puts any serde value, blocking while the queue is full. A value whose encoding does not fit
    /// a slot is refused with `TooLarge` (its reserved slot is given up; nothing is delivered).
    pub fn put_serde<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let mut slot = self.reserve()?;
        let len = encode(value, slot.buf())?;
        slot.commit(len)
    }

    /// As [`Queue::put_serde`], but `Full` instead of blocking.
    pub fn try_put_serde<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let mut slot = self.try_reserve()?;
        let len = encode(value, slot.buf())?;
        slot.commit(len)
    }

    /// Takes a message and decodes it as `T`, blocking while the queue is empty.
    pub fn get_serde<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(&self.get()?)
    }

    /// As [`Queue::get_serde`], but `Empty` instead of blocking.
    pub fn try_get_serde<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(&self.try_get()?)
    }
}

impl Sender {
    /// Sends any serde value, blocking while the pipe is full.
    pub fn send_serde<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        let mut slot = self.reserve()?;
        let len = encode(value, slot.buf())?;
        slot.commit(len)
    }
}

impl Receiver {
    /// Receives a message and decodes it as `T`, blocking while the pipe is empty.
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
