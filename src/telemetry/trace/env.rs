//! The standard OpenTelemetry environment, read once with the rest of the configuration (so that
//! tests can pass their own): whether to export, where to, under which name, and the sampler.
//! Variables the exporter reads by itself (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`,
//! `_COMPRESSION`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`) are left to it.

use std::collections::BTreeMap;

use super::{OtlpExport, RootSampler, SamplerChoice};

/// A standard variable with a value this gateway cannot honour. Names the variable; quotes the
/// value (none of these is a secret: the headers, which may be, are not read here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct EnvError {
    pub variable: &'static str,
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> EnvError {
    EnvError {
        variable,
        problem: problem.into(),
    }
}

/// The export the variables ask for, or `None` when no endpoint is set (or `OTEL_SDK_DISABLED`
/// or `OTEL_TRACES_EXPORTER=none` say no).
pub fn from_env(vars: &BTreeMap<String, String>) -> Result<Option<OtlpExport>, EnvError> {
    let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match get("OTEL_TRACES_EXPORTER") {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(bad(
                "OTEL_TRACES_EXPORTER",
                format!("{other:?} is not supported: only otlp (or none)"),
            ));
        }
    }
    let Some(endpoint) =
        get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Ok(None);
    };
    let protocol_var = if get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_some() {
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    } else {
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    };
    match get(protocol_var) {
        None | Some("grpc") => {}
        Some(other) => {
            return Err(bad(
                protocol_var,
                format!(
                    "{other:?} is not supported: this gateway exports OTLP over gRPC only (a \
                     collector's port 4317); set grpc or leave it unset"
                ),
            ));
        }
    }
    let endpoint_var = if get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    } else {
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    };
    // Not quoted: a URL with user information carries a password.
    match reqwest::Url::parse(endpoint) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            return Err(bad(
                endpoint_var,
                "must not carry user information (the value is not repeated); a collector's \
                 credentials go in OTEL_EXPORTER_OTLP_HEADERS",
            ));
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => {
            return Err(bad(
                endpoint_var,
                "must be an http:// or https:// URL with a host (the value is not repeated)",
            ));
        }
    }
    Ok(Some(OtlpExport {
        endpoint: endpoint.to_owned(),
        service_name: get("OTEL_SERVICE_NAME").unwrap_or("cams-flows").to_owned(),
        sampler: sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?,
    }))
}

fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerChoice, EnvError> {
    let ratio = || -> Result<f64, EnvError> {
        match arg {
            None => Ok(1.0),
            Some(text) => match text.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(bad(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("{text:?} must be a number between 0 and 1"),
                )),
            },
        }
    };
    Ok(match name.unwrap_or("parentbased_always_on") {
        "always_on" => SamplerChoice::AlwaysOn,
        "always_off" => SamplerChoice::AlwaysOff,
        "traceidratio" => SamplerChoice::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerChoice::ParentBased(RootSampler::AlwaysOn),
        "parentbased_always_off" => SamplerChoice::ParentBased(RootSampler::AlwaysOff),
        "parentbased_traceidratio" => {
            SamplerChoice::ParentBased(RootSampler::TraceIdRatio(ratio()?))
        }
        other => {
            return Err(bad(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?} is not supported: always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(from_env(&vars(&[("OTEL_SERVICE_NAME", "x")])), Ok(None));
        let disabled = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(from_env(&disabled), Ok(None));
    }

    #[test]
    fn the_traces_endpoint_wins_and_parent_based_is_the_default() {
        let export = from_env(&vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ]))
        .expect("valid")
        .expect("on");
        assert_eq!(export.endpoint, "http://traces:4317");
        assert_eq!(export.service_name, "cams-flows");
        assert_eq!(
            export.sampler,
            SamplerChoice::ParentBased(RootSampler::AlwaysOn)
        );
    }

    #[test]
    fn samplers_and_their_argument() {
        let with = |name, arg| {
            let mut v = vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_SAMPLER", name),
            ]);
            if let Some(arg) = arg {
                v.insert("OTEL_TRACES_SAMPLER_ARG".to_owned(), arg);
            }
            from_env(&v).map(|e| e.map(|e| e.sampler))
        };
        assert_eq!(
            with("parentbased_traceidratio", Some("0.25".into())),
            Ok(Some(SamplerChoice::ParentBased(RootSampler::TraceIdRatio(
                0.25
            ))))
        );
        assert_eq!(with("always_off", None), Ok(Some(SamplerChoice::AlwaysOff)));
        assert_eq!(
            with("traceidratio", Some("2".into())).map_err(|e| e.variable),
            Err("OTEL_TRACES_SAMPLER_ARG")
        );
        assert_eq!(
            with("jaeger_remote", None).map_err(|e| e.variable),
            Err("OTEL_TRACES_SAMPLER")
        );
    }

    #[test]
    fn an_endpoint_with_a_password_is_refused_unquoted() {
        let v = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:hunter2@c:4317")]);
        let error = from_env(&v).expect_err("refused");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let v = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
        assert!(from_env(&v).is_err());
    }

    #[test]
    fn only_grpc_is_exported() {
        let v = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(
            from_env(&v).map_err(|e| e.variable),
            Err("OTEL_EXPORTER_OTLP_PROTOCOL")
        );
    }
}
