//! What CAMS answered to a read, as the domain knows it: the data of one of the four reads and
//! CAMS's RequestId.

use std::time::SystemTime;

use super::Flow;

/// A successful answer of CAMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub data: Data,
    /// CAMS's RequestId, trimmed (CAMS has been seen to send a trailing newline).
    pub request_id: String,
}

/// The data of an answer, by read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Flow(Flow),
    List(Vec<FlowSummary>),
    PreviewUrl(PreviewUrl),
    JsonAsset(JsonAsset),
}

/// A flow as ListFlow lists it: no status, no preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSummary {
    pub flow_id: String,
    pub flow_name: String,
    pub raw_categories: Vec<String>,
}

/// A flow's temporary preview URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewUrl {
    pub flow_id: String,
    pub preview_url: String,
    /// When the URL dies; `None` when CAMS sent no expiry.
    pub preview_url_expires: Option<SystemTime>,
}

/// Where a flow's Flow JSON file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonAsset {
    pub flow_id: String,
    pub file_path: String,
}

impl Answer {
    /// When the preview URL this answer carries dies, if it carries one that does: no cached
    /// copy of it may be served past that.
    pub fn preview_url_expires(&self) -> Option<SystemTime> {
        match &self.data {
            Data::Flow(flow) => flow.preview_url_expires,
            Data::PreviewUrl(preview) => preview.preview_url_expires,
            Data::List(_) | Data::JsonAsset(_) => None,
        }
    }

    /// The preview URL this answer carries: a GetFlow answer has it too.
    pub fn preview_url(&self) -> Option<PreviewUrl> {
        match &self.data {
            Data::Flow(flow) => Some(PreviewUrl {
                flow_id: flow.flow_id.clone(),
                preview_url: flow.preview_url.clone(),
                preview_url_expires: flow.preview_url_expires,
            }),
            Data::PreviewUrl(preview) => Some(preview.clone()),
            Data::List(_) | Data::JsonAsset(_) => None,
        }
    }

    /// This GetFlow answer with a preview URL that lives longer, if `fresher` is one; `None`
    /// when there is nothing to change.
    pub fn with_fresher_preview(&self, fresher: &PreviewUrl) -> Option<Self> {
        let Data::Flow(flow) = &self.data else {
            return None;
        };
        // Only a URL known to live longer: the cached entry's times were bounded by the old
        // URL's expiry, and stay, so a URL that may die sooner must not ride on them.
        let later = match (flow.preview_url_expires, fresher.preview_url_expires) {
            (Some(old), Some(new)) => new > old,
            _ => false,
        };
        if !later || fresher.flow_id != flow.flow_id {
            return None;
        }
        let mut flow = flow.clone();
        flow.preview_url = fresher.preview_url.clone();
        flow.preview_url_expires = fresher.preview_url_expires;
        Some(Self {
            data: Data::Flow(flow),
            request_id: self.request_id.clone(),
        })
    }
}
