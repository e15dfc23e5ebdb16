//! Reading the HTML forms and the JSON API bodies into contract requests, with errors that name
//! the field a person has to fix.

use contract::{
    InvoiceRequest, LineItem, MAX_LINES, SCHEMA_VERSION, ScoreRequest, Validate, ValidationError,
};
use serde::de::DeserializeOwned;

/// How many line rows the invoice form offers; blank rows are ignored.
pub const FORM_LINE_ROWS: usize = 3;

/// One line row as typed, kept to refill the form after an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineInput {
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
}

impl LineInput {
    fn is_blank(&self) -> bool {
        self.description.trim().is_empty()
            && self.quantity.trim().is_empty()
            && self.unit_price.trim().is_empty()
    }
}

/// The invoice form as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceForm {
    pub customer: String,
    pub lines: Vec<LineInput>,
}

impl Default for InvoiceForm {
    fn default() -> Self {
        InvoiceForm {
            customer: String::new(),
            lines: vec![LineInput::default(); FORM_LINE_ROWS],
        }
    }
}

/// The score form as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScoreForm {
    pub customer: String,
}

/// A problem with one form field: the id of its input, so the page shows the message next to
/// it, the field's name as people read it, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub input_id: String,
    pub label: String,
    pub problem: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.label, self.problem)
    }
}

impl FieldError {
    fn line(number: usize, column: &str, problem: impl Into<String>) -> Self {
        FieldError {
            input_id: format!("line-{number}-{column}"),
            label: format!("line {number} {}", column.replace('_', " ")),
            problem: problem.into(),
        }
    }

    /// Why a valid form was not sent (Kafka could not take it), placed on the form itself: the
    /// page keeps what was typed, so it can be sent again as it is.
    pub fn not_sent(form: &str, reason: &str) -> Self {
        FieldError {
            input_id: format!("{form}-form"),
            label: "not sent".into(),
            problem: format!("{reason} The form keeps what you typed."),
        }
    }

    /// Where the page shows the field: the fields above the rows first (row 0), then row by row,
    /// column by column, so the error summary reads in the order a person fixes the form.
    fn form_order(&self) -> (usize, usize) {
        const COLUMNS: [&str; 3] = ["description", "quantity", "unit_price"];
        match self
            .input_id
            .strip_prefix("line-")
            .and_then(|rest| rest.split_once('-'))
        {
            Some((row, column)) => (
                row.parse().unwrap_or(usize::MAX),
                COLUMNS
                    .iter()
                    .position(|name| *name == column)
                    .unwrap_or(COLUMNS.len()),
            ),
            None => (0, 0),
        }
    }

    /// Places a contract validation error (`lines[1].unit_price_cents`) on the form's input,
    /// in the row that line was typed in (`row_numbers[1]`).
    fn from_validation(form: &str, error: &ValidationError, row_numbers: &[usize]) -> Self {
        let line = error
            .field
            .strip_prefix("lines[")
            .and_then(|rest| rest.split_once("]."));
        match (error.field.as_str(), line) {
            (_, Some((index, name))) => {
                let number = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| row_numbers.get(index).copied())
                    .unwrap_or(0);
                let column = name.strip_suffix("_cents").unwrap_or(name);
                FieldError::line(number, column, error.problem.clone())
            }
            ("customer" | "lines", None) => FieldError {
                input_id: format!("{form}-{}", error.field),
                label: error.field.clone(),
                problem: error.problem.clone(),
            },
            (other, None) => FieldError {
                input_id: format!("{form}-form"),
                label: other.replace('_', " "),
                problem: error.problem.clone(),
            },
        }
    }
}

/// Reads a price such as `12`, `12.5` or `12.50` as cents.
pub fn parse_price_cents(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if units.is_empty() || !digits_only(units) || !digits_only(fraction) || fraction.len() > 2 {
        return Err("must be an amount such as 12.50".into());
    }
    let units: u64 = units.parse().map_err(|_| "is too large".to_owned())?;
    let cents: u64 = format!("{fraction:0<2}").parse().unwrap_or(0);
    units
        .checked_mul(100)
        .and_then(|value| value.checked_add(cents))
        .ok_or_else(|| "is too large".to_owned())
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

impl InvoiceForm {
    /// Reads an `application/x-www-form-urlencoded` body with repeated `description`,
    /// `quantity` and `unit_price` fields, one of each per row.
    pub fn from_body(body: &[u8]) -> Self {
        let pairs = form_pairs(body);
        let descriptions = values(&pairs, "description");
        let quantities = values(&pairs, "quantity");
        let prices = values(&pairs, "unit_price");
        let rows = descriptions.len().max(quantities.len()).max(prices.len());
        let cell =
            |column: &[&str], row: usize| column.get(row).copied().unwrap_or_default().to_owned();
        InvoiceForm {
            customer: values(&pairs, "customer")
                .first()
                .copied()
                .unwrap_or_default()
                .to_owned(),
            lines: (0..rows)
                .map(|row| LineInput {
                    description: cell(&descriptions, row),
                    quantity: cell(&quantities, row),
                    unit_price: cell(&prices, row),
                })
                .collect(),
        }
    }

    /// Refuses a form with more rows than an invoice may have lines, before its rows are
    /// validated or shown again: a body of thousands of bad rows would otherwise come back as
    /// an error page a hundred times its size.
    pub fn check_row_count(&self) -> Result<(), String> {
        if self.lines.len() > MAX_LINES {
            return Err(format!(
                "The form has {} line rows; an invoice has at most {MAX_LINES} lines.",
                self.lines.len()
            ));
        }
        Ok(())
    }

    /// The request, or every problem found in one pass (a quantity that is not a number and a
    /// customer left empty are reported together), each placed on the row it was typed in.
    pub fn to_request(&self) -> Result<InvoiceRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut lines = Vec::new();
        // The form row number of each line sent: blank rows are skipped, so line 1 of the
        // request may have been typed in row 2.
        let mut row_numbers = Vec::new();
        for (index, input) in self.lines.iter().enumerate() {
            if input.is_blank() {
                continue;
            }
            let number = index + 1;
            // A field that does not parse is reported here and stands in as a valid value, so
            // the contract's checks below report the row's other fields but not this one twice.
            let quantity = input.quantity.trim().parse::<u32>().unwrap_or_else(|_| {
                errors.push(FieldError::line(
                    number,
                    "quantity",
                    "must be a whole number",
                ));
                1
            });
            let unit_price_cents = parse_price_cents(&input.unit_price).unwrap_or_else(|problem| {
                errors.push(FieldError::line(number, "unit_price", problem));
                0
            });
            lines.push(LineItem {
                description: input.description.trim().to_owned(),
                quantity,
                unit_price_cents,
            });
            row_numbers.push(number);
        }
        let request = InvoiceRequest {
            schema_version: SCHEMA_VERSION,
            customer: self.customer.trim().to_owned(),
            lines,
        };
        errors.extend(
            request
                .problems()
                .iter()
                .map(|problem| FieldError::from_validation("invoice", problem, &row_numbers)),
        );
        if errors.is_empty() {
            Ok(request)
        } else {
            errors.sort_by_key(FieldError::form_order);
            Err(errors)
        }
    }

    /// Rows to show: what was typed, padded with blank rows up to the form's size.
    pub fn rows(&self) -> Vec<LineInput> {
        let mut rows = self.lines.clone();
        if rows.len() < FORM_LINE_ROWS {
            rows.resize(FORM_LINE_ROWS, LineInput::default());
        }
        rows
    }
}

impl ScoreForm {
    pub fn from_body(body: &[u8]) -> Self {
        let pairs = form_pairs(body);
        ScoreForm {
            customer: values(&pairs, "customer")
                .first()
                .copied()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    pub fn to_request(&self) -> Result<ScoreRequest, Vec<FieldError>> {
        let request = ScoreRequest {
            schema_version: SCHEMA_VERSION,
            customer: self.customer.trim().to_owned(),
        };
        let problems = request.problems();
        if problems.is_empty() {
            Ok(request)
        } else {
            Err(problems
                .iter()
                .map(|problem| FieldError::from_validation("score", problem, &[]))
                .collect())
        }
    }
}

/// Reads and validates a JSON API body; the error names the field (`lines[0].quantity: ...`).
pub fn parse_json_request<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // `.` is the whole body, `?` a position before any field (empty or cut-off body).
        if path == "." || path == "?" {
            format!("invalid JSON body: {inner}")
        } else {
            format!("{path}: {inner}")
        }
    })?;
    deserializer
        .end()
        .map_err(|error| format!("invalid JSON body: {error}"))?;
    request.validate().map_err(|error| error.to_string())?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_form_reads_rows_and_skips_blank_ones() {
        let form = InvoiceForm::from_body(
            b"customer=ACME+Ltd&description=Widget&quantity=3&unit_price=12.5&description=&quantity=&unit_price=&description=Bolt&quantity=1&unit_price=0.05",
        );
        let request = form.to_request().unwrap();
        assert_eq!(request.customer, "ACME Ltd");
        assert_eq!(request.lines.len(), 2);
        assert_eq!(request.lines[0].unit_price_cents, 1250);
        assert_eq!(request.lines[1].description, "Bolt");
        assert_eq!(request.lines[1].unit_price_cents, 5);
    }

    /// Each error as `input id => message`, the way the page places them.
    fn placed(errors: Vec<FieldError>) -> Vec<String> {
        errors
            .iter()
            .map(|error| format!("{} => {error}", error.input_id))
            .collect()
    }

    #[test]
    fn invoice_form_errors_name_the_row_and_field() {
        let form =
            InvoiceForm::from_body(b"customer=A&description=W&quantity=two&unit_price=1.234");
        assert_eq!(
            placed(form.to_request().unwrap_err()),
            [
                "line-1-quantity => line 1 quantity: must be a whole number",
                "line-1-unit_price => line 1 unit price: must be an amount such as 12.50"
            ]
        );
        let empty = InvoiceForm::from_body(b"customer=A&description=&quantity=&unit_price=");
        assert_eq!(
            placed(empty.to_request().unwrap_err()),
            ["invoice-lines => lines: must have at least one line item"]
        );
        let zero = InvoiceForm::from_body(
            b"customer=A&description=&quantity=&unit_price=&description=W&quantity=0&unit_price=1",
        );
        assert_eq!(
            placed(zero.to_request().unwrap_err()),
            ["line-2-quantity => line 2 quantity: must be between 1 and 1000000"],
            "a contract error is placed in the row it was typed in, past the blank first row"
        );
        let pricey =
            InvoiceForm::from_body(b"customer=A&description=W&quantity=1&unit_price=999999999999");
        assert_eq!(
            placed(pricey.to_request().unwrap_err()),
            ["line-1-unit_price => line 1 unit price: must be at most 10000000000"]
        );
        let nameless = InvoiceForm::from_body(b"customer=+&description=W&quantity=1&unit_price=1");
        assert_eq!(
            placed(nameless.to_request().unwrap_err()),
            ["invoice-customer => customer: must not be empty"]
        );
    }

    #[test]
    fn every_problem_is_reported_in_one_pass_in_page_order() {
        let form = InvoiceForm::from_body(
            b"customer=+&description=&quantity=0&unit_price=abc&description=&quantity=&unit_price=&description=W&quantity=x&unit_price=999999999999",
        );
        assert_eq!(
            placed(form.to_request().unwrap_err()),
            [
                "invoice-customer => customer: must not be empty",
                "line-1-description => line 1 description: must not be empty",
                "line-1-quantity => line 1 quantity: must be between 1 and 1000000",
                "line-1-unit_price => line 1 unit price: must be an amount such as 12.50",
                "line-3-quantity => line 3 quantity: must be a whole number",
                "line-3-unit_price => line 3 unit price: must be at most 10000000000",
            ],
            "format errors do not hide range errors, nor the customer's"
        );
        let score = ScoreForm {
            customer: "\u{7}".into(),
        };
        assert_eq!(
            placed(score.to_request().unwrap_err()),
            ["score-customer => customer: must not contain control characters"]
        );
    }

    #[test]
    fn prices_parse_strictly() {
        assert_eq!(parse_price_cents("12"), Ok(1200));
        assert_eq!(parse_price_cents(" 0.5 "), Ok(50));
        assert!(parse_price_cents("-1").is_err());
        assert!(parse_price_cents("1e3").is_err());
        assert!(parse_price_cents(".5").is_err());
        assert!(parse_price_cents("99999999999999999999").is_err());
        assert!(parse_price_cents("184467440737095517").is_err());
    }

    #[test]
    fn form_keeps_what_was_typed_for_refilling() {
        let form =
            InvoiceForm::from_body(b"customer=%3Cb%3E&description=W&quantity=x&unit_price=1");
        assert_eq!(form.customer, "<b>");
        let rows = form.rows();
        assert_eq!(rows.len(), FORM_LINE_ROWS);
        assert_eq!(rows[0].quantity, "x");
    }

    #[test]
    fn score_form_validates_the_customer() {
        assert_eq!(
            ScoreForm::from_body(b"customer=ACME")
                .to_request()
                .unwrap()
                .customer,
            "ACME"
        );
        assert_eq!(
            placed(ScoreForm::from_body(b"").to_request().unwrap_err()),
            ["score-customer => customer: must not be empty"]
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        let error = parse_json_request::<InvoiceRequest>(
            br#"{"customer":"A","lines":[{"description":"W","quantity":-1,"unit_price_cents":1}]}"#,
        )
        .unwrap_err();
        assert!(error.starts_with("lines[0].quantity:"), "{error}");
        let error = parse_json_request::<ScoreRequest>(br#"{"customer":""}"#).unwrap_err();
        assert_eq!(error, "customer: must not be empty");
        let error = parse_json_request::<ScoreRequest>(b"{").unwrap_err();
        assert!(error.starts_with("invalid JSON body"), "{error}");
        assert!(parse_json_request::<ScoreRequest>(br#"{"customer":"A"}"#).is_ok());
    }
}
