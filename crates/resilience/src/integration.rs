//! The parts that the tower layers and the reqwest middleware share: the request of each attempt,
//! the classification of each attempt, and the conversion of the manager's result back into what
//! the wrapped service or client returned.
//!
//! A service returns a failed HTTP response as `Ok`, while the manager retries and falls back only
//! on `Err`. So each attempt is classified here, and an `Ok` that is not a success travels through
//! the manager as an [`Unsuccessful`] error carrying its outcome. The manager then classifies with
//! [`Recorded`], which reads that outcome back. The last response comes back to the caller as it
//! came from the service, and no failed response is ever cached.

use std::sync::{Mutex, PoisonError};

use crate::manager::{CallError, FailureReport};
use crate::outcome::{Classify, NeutralReason, Outcome};

/// The request of a call, kept so that every attempt gets its own copy.
#[derive(Debug)]
pub(crate) struct RequestSlot<Req> {
    original: Mutex<Option<Req>>,
}

impl<Req> RequestSlot<Req> {
    pub(crate) fn new(request: Req) -> Self {
        RequestSlot {
            original: Mutex::new(Some(request)),
        }
    }

    /// Returns the request for the next attempt, and true when it is the original itself, so that
    /// no later attempt can have one. Returns `None` once the original is gone.
    pub(crate) fn next(&self, clone: impl FnOnce(&Req) -> Option<Req>) -> Option<(Req, bool)> {
        let mut original = self.original.lock().unwrap_or_else(PoisonError::into_inner);
        match clone(original.as_ref()?) {
            Some(copy) => Some((copy, false)),
            None => original.take().map(|request| (request, true)),
        }
    }
}

/// An attempt that was not a success: its outcome, and what it returned.
#[derive(Debug)]
pub(crate) struct Unsuccessful<R, E> {
    outcome: Outcome,
    returned: Returned<R, E>,
}

/// The value an unsuccessful attempt returned.
#[derive(Debug)]
pub(crate) enum Returned<R, E> {
    /// A response classified as a failure or as neutral, such as an HTTP 503 or 400.
    Response(R),
    /// The service's error.
    Error(E),
    /// No attempt was made: the request could not be copied and its original was already sent.
    NoRequest,
}

impl<R, E> Unsuccessful<R, E> {
    /// Returns the result of an attempt that had no request to send. Neutral, so that it counts
    /// against no circuit and is never retried.
    pub(crate) fn no_request() -> Self {
        Unsuccessful {
            outcome: Outcome::Neutral(NeutralReason::Cancelled),
            returned: Returned::NoRequest,
        }
    }
}

/// Classifies one attempt's result with `classifier`; a success stays `Ok`, anything else becomes
/// an [`Unsuccessful`] error. When `sent_original` is true no copy of the request is left, so a
/// failure is marked as not retryable.
pub(crate) fn classify_attempt<R, E, K>(
    classifier: &K,
    result: Result<R, E>,
    sent_original: bool,
) -> Result<R, Unsuccessful<R, E>>
where
    K: Classify<R, E> + ?Sized,
{
    let mut outcome = classifier.classify(&result);
    if sent_original {
        if let Outcome::Failure(failure) = &mut outcome {
            failure.retryable = false;
        }
    }
    match (result, outcome) {
        (Ok(response), Outcome::Success) => Ok(response),
        (Ok(response), outcome) => Err(Unsuccessful {
            outcome,
            returned: Returned::Response(response),
        }),
        (Err(error), outcome) => Err(Unsuccessful {
            outcome,
            returned: Returned::Error(error),
        }),
    }
}

/// The classifier the manager runs: it returns the outcome that [`classify_attempt`] recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded;

impl<R, E> Classify<R, Unsuccessful<R, E>> for Recorded {
    fn classify(&self, result: &Result<R, Unsuccessful<R, E>>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(unsuccessful) => unsuccessful.outcome,
        }
    }
}

/// The end of a call through the manager, with the service's own types back in place.
#[derive(Debug)]
pub(crate) enum Finished<R, E> {
    /// The service returned this response on the last attempt of the primary provider.
    Response {
        /// The response, as the service returned it.
        response: R,
        /// Its classification: a failure or neutral.
        #[cfg_attr(not(feature = "tower"), allow(dead_code))]
        outcome: Outcome,
        /// The call's provider, attempts and retry-after hint.
        #[cfg_attr(not(feature = "tower"), allow(dead_code))]
        report: FailureReport,
    },
    /// The call failed: the service's error, or a rejection by the manager.
    Failed(CallError<E>),
}

/// Puts the service's own response or error back in place of the manager's wrapper.
pub(crate) fn finish<R, E>(error: CallError<Unsuccessful<R, E>>) -> Finished<R, E> {
    let report = error.report().clone();
    match error.into_source() {
        Some(Unsuccessful {
            outcome,
            returned: Returned::Response(response),
        }) => Finished::Response {
            response,
            outcome,
            report,
        },
        Some(Unsuccessful {
            returned: Returned::Error(error),
            ..
        }) => Finished::Failed(CallError::new(report, Some(error))),
        Some(Unsuccessful {
            returned: Returned::NoRequest,
            ..
        })
        | None => Finished::Failed(CallError::new(report, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Failure, FailureClass};

    fn by_value(result: &Result<u16, &'static str>) -> Outcome {
        match result {
            Ok(200) => Outcome::Success,
            Ok(400) => Outcome::Neutral(NeutralReason::CallerError),
            Ok(_) | Err(_) => Outcome::failure(FailureClass::Server),
        }
    }

    #[test]
    fn slot_copies_until_clone_fails() {
        let slot = RequestSlot::new(7_u32);
        assert_eq!(slot.next(|r| Some(*r)), Some((7, false)));
        assert_eq!(slot.next(|r| Some(*r)), Some((7, false)));
        assert_eq!(slot.next(|_| None), Some((7, true)));
        assert_eq!(slot.next(|r| Some(*r)), None);
    }

    #[test]
    fn success_stays_ok() {
        let result = classify_attempt(&by_value, Ok(200), false);
        assert!(matches!(result, Ok(200)));
        assert_eq!(Recorded.classify(&result), Outcome::Success);
    }

    #[test]
    fn failed_response_becomes_error() {
        let result = classify_attempt(&by_value, Ok(503), false);
        let outcome = Recorded.classify(&result);
        assert_eq!(outcome, Outcome::failure(FailureClass::Server));
        assert!(matches!(
            result,
            Err(Unsuccessful {
                returned: Returned::Response(503),
                ..
            })
        ));
    }

    #[test]
    fn neutral_response_becomes_error() {
        let result = classify_attempt(&by_value, Ok(400), false);
        assert_eq!(
            Recorded.classify(&result),
            Outcome::Neutral(NeutralReason::CallerError)
        );
    }

    #[test]
    fn original_sent_stops_retries() {
        let result = classify_attempt(&by_value, Err("reset"), true);
        let expected = Failure::new(FailureClass::Server).retryable(false);
        assert_eq!(Recorded.classify(&result), Outcome::Failure(expected));
    }

    #[test]
    fn no_request_is_neutral() {
        let result: Result<u16, Unsuccessful<u16, ()>> = Err(Unsuccessful::no_request());
        assert_eq!(
            Recorded.classify(&result),
            Outcome::Neutral(NeutralReason::Cancelled)
        );
    }
}
