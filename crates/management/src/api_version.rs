use crate::ArmError;

/// Every management request names an `api-version`. Any well-formed one is accepted
/// (`YYYY-MM-DD` or `YYYY-MM-DD-preview`): SDKs newer than wharf send newer versions, and the
/// shapes wharf serves are the same across them.
pub fn check_api_version(v: Option<&str>) -> Result<(), ArmError> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let ok = date.len() == 10
        && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        && date.as_bytes()[4] == b'-';
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{}' is invalid. The supported format is 'YYYY-MM-DD' or 'YYYY-MM-DD-preview'.",
                v.chars().take(64).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["2019-05-01", "2023-11-01-preview", "2031-01-31"] {
            check_api_version(Some(ok)).unwrap();
        }
        assert_eq!(check_api_version(None).unwrap_err().code, "MissingApiVersionParameter");
        for bad in ["2019-5-1", "2019-13-01", "latest", "2019-05-01-beta", "2019-05-01x"] {
            assert_eq!(
                check_api_version(Some(bad)).unwrap_err().code,
                "InvalidApiVersionParameter",
                "{bad}"
            );
        }
    }
}
