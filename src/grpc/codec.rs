//! The protobuf codec of FlowService: prost's, except that a request the decoder refuses is the
//! caller's mistake, not the server's. prost reports invalid UTF-8 in a string field (or any
//! malformed message) as INTERNAL, which tells a caller the gateway is broken; here it is
//! INVALID_ARGUMENT with a `BadRequest` naming the field, and a unary request that carries a
//! second message is refused the same way rather than silently cut short.

use std::{collections::HashMap, marker::PhantomData};

use prost::Message;
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

use super::LOCAL_DOMAIN;

#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder {
            _type: PhantomData,
            decoded: false,
        }
    }
}

/// Decodes the one message of a unary call (a codec is made per call).
#[derive(Debug)]
pub struct StrictDecoder<U> {
    _type: PhantomData<U>,
    decoded: bool,
}

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if self.decoded {
            return Err(refused("", "a unary call carries exactly one message"));
        }
        self.decoded = true;
        U::decode(buf).map(Some).map_err(|error| {
            let text = error.to_string();
            refused(field_of(&text), &text)
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The field a prost error names (`GetFlowRequest.flow_id: invalid string value…` ⇒
/// `flow_id`); empty when it names none.
fn field_of(text: &str) -> &str {
    text.split(": ")
        .find_map(|part| {
            let (message, field) = part.split_once('.')?;
            let plain =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
            (plain(message) && plain(field)).then_some(field)
        })
        .unwrap_or_default()
}

fn refused(field: &str, description: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, description);
    details.set_error_info("INVALID_ARGUMENT", LOCAL_DOMAIN, HashMap::new());
    let message = format!("invalid request: {description}");
    tracing::info!(
        target: "cams_flows::call",
        grpc_code = "INVALID_ARGUMENT",
        field,
        error = %message,
        "failed"
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_is_read_from_prosts_message() {
        assert_eq!(
            field_of(
                "failed to decode Protobuf message: GetFlowRequest.flow_id: invalid string value: \
                 data is not UTF-8 encoded"
            ),
            "flow_id"
        );
        assert_eq!(
            field_of("failed to decode Protobuf message: buffer underflow"),
            ""
        );
    }
}
