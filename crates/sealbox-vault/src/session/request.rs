//! The Vault API requests vaultrs has no endpoint for (or whose vaultrs endpoint would keep a
//! secret in a plain `String`): a method, a path and an optional JSON body.

use std::fmt;
use std::marker::PhantomData;

use async_trait::async_trait;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use rustify::errors::ClientError;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// A JSON request to the Vault API whose answer (`data`, or `auth` through
/// `vaultrs::api::auth`) is read as `R`. The body is zeroized when the request is dropped:
/// login bodies hold credentials.
pub(crate) struct JsonRequest<R> {
    method: RequestMethod,
    pub(super) path: String,
    pub(super) body: Option<Zeroizing<Vec<u8>>>,
    response: PhantomData<fn() -> R>,
}

impl<R> JsonRequest<R> {
    /// `GET path`, without a body.
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Self::new(RequestMethod::GET, path.into(), None)
    }

    /// `POST path` with `body` (JSON), or without one.
    pub(crate) fn post(path: impl Into<String>, body: Option<Zeroizing<Vec<u8>>>) -> Self {
        Self::new(RequestMethod::POST, path.into(), body)
    }

    fn new(method: RequestMethod, path: String, body: Option<Zeroizing<Vec<u8>>>) -> Self {
        Self {
            method,
            path,
            body,
            response: PhantomData,
        }
    }
}

impl<R> fmt::Debug for JsonRequest<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body", &self.body.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[async_trait]
impl<R: DeserializeOwned + Send + Sync> rustify::Endpoint for JsonRequest<R> {
    type Response = R;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.body.as_ref().map(|b| b.to_vec()))
    }
}
