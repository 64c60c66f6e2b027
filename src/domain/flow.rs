use std::time::{Duration, SystemTime};

/// Lifecycle state of a flow. CAMS's set is open: an unseen value is `Unrecognized` and the text
/// travels on in [`Flow::raw_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStatus {
    Unrecognized,
    Draft,
    Published,
    Deprecated,
    Blocked,
    Throttled,
}

impl FlowStatus {
    pub fn from_cams(raw: &str) -> Self {
        match raw {
            "DRAFT" => Self::Draft,
            "PUBLISHED" => Self::Published,
            "DEPRECATED" => Self::Deprecated,
            "BLOCKED" => Self::Blocked,
            "THROTTLED" => Self::Throttled,
            _ => Self::Unrecognized,
        }
    }
}

/// Use-case category of a flow; an open set like [`FlowStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCategory {
    Unrecognized,
    SignUp,
    SignIn,
    AppointmentBooking,
    LeadGeneration,
    ContactUs,
    CustomerSupport,
    Survey,
    Other,
    Shopping,
}

impl FlowCategory {
    pub fn from_cams(raw: &str) -> Self {
        match raw {
            "SIGN_UP" => Self::SignUp,
            "SIGN_IN" => Self::SignIn,
            "APPOINTMENT_BOOKING" => Self::AppointmentBooking,
            "LEAD_GENERATION" => Self::LeadGeneration,
            "CONTACT_US" => Self::ContactUs,
            "CUSTOMER_SUPPORT" => Self::CustomerSupport,
            "SURVEY" => Self::Survey,
            "OTHER" => Self::Other,
            "SHOPPING" => Self::Shopping,
            _ => Self::Unrecognized,
        }
    }
}

/// A flow as CAMS described it, with CAMS's text kept verbatim next to the typed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub flow_id: String,
    pub flow_name: String,
    pub raw_status: String,
    pub raw_categories: Vec<String>,
    pub json_version: String,
    pub data_api_version: String,
    pub preview_url: String,
    /// When the preview URL dies; `None` when CAMS sent no expiry.
    pub preview_url_expires: Option<SystemTime>,
    pub endpoint_uri: String,
}

impl Flow {
    pub fn status(&self) -> FlowStatus {
        FlowStatus::from_cams(&self.raw_status)
    }

    pub fn categories(&self) -> impl Iterator<Item = FlowCategory> + '_ {
        self.raw_categories
            .iter()
            .map(|c| FlowCategory::from_cams(c))
    }

    /// Converts CAMS's `PreviewUrlExpires` (Unix milliseconds). Negative values predate the epoch
    /// and are kept as such rather than refused.
    pub fn expiry_from_unix_millis(ms: i64) -> Option<SystemTime> {
        let magnitude = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(magnitude)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(magnitude)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_unrecognized_not_errors() {
        assert_eq!(FlowStatus::from_cams("ARCHIVED"), FlowStatus::Unrecognized);
        assert_eq!(FlowStatus::from_cams("THROTTLED"), FlowStatus::Throttled);
        assert_eq!(FlowCategory::from_cams("SHOPPING"), FlowCategory::Shopping);
        assert_eq!(
            FlowCategory::from_cams("sign_up"),
            FlowCategory::Unrecognized
        );
    }

    #[test]
    fn expiry_is_milliseconds() {
        let t = Flow::expiry_from_unix_millis(1_700_617_436_633).expect("in range");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis()),
            Some(1_700_617_436_633)
        );
        assert!(Flow::expiry_from_unix_millis(-1_000).is_some());
    }
}
