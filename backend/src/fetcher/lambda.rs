//! The `lambda` fetcher kind: the same fetcher code deployed as AWS Lambda functions named
//! `<prefix><dir>` (Apex's `{project}_{function}`), invoked synchronously with the contract's
//! events. Discovery lists the functions with the prefix (every page); it runs at startup and
//! in the background, never on the request path.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use serde_json::{json, Map, Value};

use super::{parse_fetch_response, redact, FetchError, FetchOutcome, FetchRequest, Fetcher, Keys};

/// One deployed fetcher function.
#[derive(Debug, Clone)]
pub struct LambdaFetcher {
    client: aws_sdk_lambda::Client,
    function: String,
    label: String,
    timeout: Duration,
}

/// Every function whose name starts with `prefix`, as fetchers labelled by the rest of the
/// name (the folder in `functions/`).
pub async fn discover(
    client: aws_sdk_lambda::Client,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<LambdaFetcher>> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let page = client
            .list_functions()
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("ListFunctions failed: {}", DisplayErrorContext(&e)))?;
        names.extend(
            page.functions()
                .iter()
                .filter_map(|f| f.function_name())
                .filter(|n| n.starts_with(prefix) && n.len() > prefix.len())
                .map(str::to_string),
        );
        match page.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .map(|function| {
            LambdaFetcher::new(
                client.clone(),
                &function,
                &function[prefix.len()..],
                timeout,
            )
        })
        .collect())
}

impl LambdaFetcher {
    /// A fetcher invoking `function`, known as `label` in logs and errors.
    pub fn new(
        client: aws_sdk_lambda::Client,
        function: &str,
        label: &str,
        timeout: Duration,
    ) -> LambdaFetcher {
        LambdaFetcher {
            client,
            function: function.to_string(),
            label: label.to_string(),
            timeout,
        }
    }

    /// The deployed function's name.
    pub fn function(&self) -> &str {
        &self.function
    }

    async fn invoke(&self, event: Value, keys: &Keys) -> Result<Value, FetchError> {
        let payload = serde_json::to_vec(&event).expect("events serialize");
        let sent = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload))
            .send();
        let out = match tokio::time::timeout(self.timeout + Duration::from_secs(5), sent).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(self.invoke_error(e)),
            Err(_) => {
                return Err(FetchError::Timeout {
                    fetcher: self.label.clone(),
                    seconds: self.timeout.as_secs_f64(),
                })
            }
        };
        let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if out.function_error().is_some() {
            return Err(self.function_error(body, keys));
        }
        serde_json::from_slice(body).map_err(|e| FetchError::InvalidResponse {
            fetcher: self.label.clone(),
            detail: format!("Lambda {} returned no JSON ({e})", self.function),
        })
    }

    /// The handler raised, timed out or its runtime died (`X-Amz-Function-Error`).
    fn function_error(&self, body: &[u8], keys: &Keys) -> FetchError {
        let error: Map<String, Value> = serde_json::from_slice(body).unwrap_or_default();
        let text = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or_default();
        let message = redact(text("errorMessage"), keys);
        if message.contains("Task timed out") || text("errorType") == "Sandbox.Timedout" {
            return FetchError::Timeout {
                fetcher: self.label.clone(),
                seconds: self.timeout.as_secs_f64(),
            };
        }
        let kind = match text("errorType") {
            "" => "Error",
            t => t,
        };
        FetchError::Crashed {
            fetcher: self.label.clone(),
            detail: format!("{kind}: {}", message.chars().take(500).collect::<String>()),
        }
    }

    fn invoke_error<R: std::fmt::Debug>(&self, e: SdkError<InvokeError, R>) -> FetchError {
        let fetcher = self.label.clone();
        if let SdkError::TimeoutError(_) = e {
            return FetchError::Timeout {
                fetcher,
                seconds: self.timeout.as_secs_f64(),
            };
        }
        if let Some(InvokeError::TooManyRequestsException(throttled)) = e.as_service_error() {
            return FetchError::Throttled {
                fetcher,
                detail: format!(
                    "Lambda throttled {} ({})",
                    self.function,
                    throttled
                        .reason()
                        .map(|r| r.as_str())
                        .unwrap_or("rate exceeded")
                ),
                retry_after: throttled
                    .retry_after_seconds()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0),
            };
        }
        let detail = match e.code() {
            Some("ResourceNotFoundException") => {
                format!("Lambda function {} does not exist (deploy it, or check fetchers.lambda_prefix)", self.function)
            }
            Some("AccessDeniedException") => format!(
                "not allowed to invoke {} (check the task role's lambda:InvokeFunction)",
                self.function
            ),
            _ => format!(
                "invoking {} failed: {}",
                self.function,
                DisplayErrorContext(&e)
            ),
        };
        FetchError::Unavailable { fetcher, detail }
    }
}

#[async_trait]
impl Fetcher for LambdaFetcher {
    fn label(&self) -> &str {
        &self.label
    }

    async fn metadata(&self) -> Result<Value, FetchError> {
        self.invoke(json!({"call": "metadata"}), &Keys::new()).await
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let raw = self.invoke(request.event(), request.keys).await?;
        parse_fetch_response(&self.label, raw)
    }
}
