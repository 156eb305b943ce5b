//! `Meteor.Error`, the one error shape behind DDP errors and most REST bodies.

use serde_json::{json, Map, Value};

/// A `Meteor.Error(error, reason, details)`.
#[derive(Clone, Debug, PartialEq)]
pub struct MeteorError {
    /// A number (403, 404) or a code string (`totp-required`).
    pub error: Value,
    /// Human text; RC's own `MeteorError` often has none.
    pub reason: Option<String>,
    /// Extra fields, e.g. `{"function": "Accounts.validateLoginAttempt"}`
    /// (boxed: rarely present, and it keeps `Result<_, MeteorError>` small).
    pub details: Option<Box<Value>>,
}

impl MeteorError {
    /// An error with a reason.
    pub fn new(error: impl Into<Value>, reason: impl Into<String>) -> Self {
        MeteorError {
            error: error.into(),
            reason: Some(reason.into()),
            details: None,
        }
    }

    /// An error without a reason, as RC's `MeteorError('not-allowed')`.
    pub fn bare(error: impl Into<Value>) -> Self {
        MeteorError {
            error: error.into(),
            reason: None,
            details: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// `"<reason> [<error>]"`, or `"[<error>]"` with no reason.
    pub fn message(&self) -> String {
        let code = match &self.error {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match &self.reason {
            Some(r) => format!("{r} [{code}]"),
            None => format!("[{code}]"),
        }
    }

    /// The DDP form, keys in Meteor's order:
    /// `isClientSafe, error, reason, details, message, errorType`.
    pub fn to_ddp(&self) -> Value {
        let mut m = Map::new();
        m.insert("isClientSafe".into(), Value::Bool(true));
        m.insert("error".into(), self.error.clone());
        if let Some(r) = &self.reason {
            m.insert("reason".into(), Value::String(r.clone()));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), (**d).clone());
        }
        m.insert("message".into(), Value::String(self.message()));
        m.insert("errorType".into(), Value::String("Meteor.Error".into()));
        Value::Object(m)
    }

    /// The REST 400 form RC's `ApiClass` builds from a thrown error:
    /// `{success:false, error:"<reason> [<code>]", errorType, details?}`.
    pub fn to_rest_failure(&self) -> Value {
        let mut body = json!({"success": false, "error": self.message(), "errorType": self.error});
        if let Some(d) = &self.details {
            body["details"] = (**d).clone();
        }
        body
    }

    /// Internal errors that are not client safe become this (`wrapInternalException`).
    pub fn internal() -> Self {
        MeteorError::new(500, "Internal server error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddp_shape_matches_meteor() {
        let e = MeteorError::new(
            403,
            "You've been logged out by the server. Please log in again.",
        );
        assert_eq!(
            serde_json::to_string(&e.to_ddp()).unwrap(),
            r#"{"isClientSafe":true,"error":403,"reason":"You've been logged out by the server. Please log in again.","message":"You've been logged out by the server. Please log in again. [403]","errorType":"Meteor.Error"}"#
        );
        assert_eq!(
            serde_json::to_string(&MeteorError::bare("not-allowed").to_ddp()).unwrap(),
            r#"{"isClientSafe":true,"error":"not-allowed","message":"[not-allowed]","errorType":"Meteor.Error"}"#
        );
    }
}
