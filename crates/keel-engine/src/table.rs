//! Tabular inputs (CSV and Arrow IPC request bodies, chunks of batch files) checked with the same rules as
//! JSON records: every cell goes through [`RequestSchema`]'s value check (nulls where the training data had
//! none, non-finite numbers, wrong types, unseen categories by policy), so HTTP and batch scoring accept and
//! refuse exactly the same values. Problems are reported per cell with the row, so a batch run can keep the
//! good rows and quarantine the bad ones while an HTTP request refuses the whole body.

use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_schema::DataType;

use crate::request::{FieldError, InputKind, RequestSchema, Scalar};

/// The outcome of checking a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCheck {
    /// Encoded rows that passed every check (row-major, `good.len() × features`).
    pub rows: Vec<f64>,
    /// Index within the table of each row in `rows`, ascending.
    pub good: Vec<usize>,
    /// Each refused row (index within the table) with its problems; paths are `$.rows[i].COLUMN`.
    pub bad: Vec<(usize, Vec<FieldError>)>,
}

impl TableCheck {
    /// Every problem, rows in order.
    pub fn errors(&self) -> impl Iterator<Item = &FieldError> {
        self.bad.iter().flat_map(|(_, e)| e.iter())
    }
}

/// How one column's cells are read.
enum Cells {
    Text(StringArray),
    F64(Float64Array),
    I64(Int64Array),
    Bool(BooleanArray),
}

impl Cells {
    fn of(a: &ArrayRef) -> Result<Cells, String> {
        let cast =
            |to: &DataType| arrow_cast::cast::cast(a.as_ref(), to).map_err(|e| e.to_string());
        Ok(match a.data_type() {
            DataType::Float64 | DataType::Float32 | DataType::Float16 => Cells::F64(
                cast(&DataType::Float64)?
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("float64")
                    .clone(),
            ),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Cells::I64(
                cast(&DataType::Int64)?
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("int64")
                    .clone(),
            ),
            DataType::Boolean => Cells::Bool(
                a.as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("bool")
                    .clone(),
            ),
            _ => Cells::Text(
                cast(&DataType::Utf8)?
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("utf8")
                    .clone(),
            ),
        })
    }

    /// The cell as a JSON-like scalar: text of a numeric column is parsed as a number (what a CSV cell means),
    /// text of a boolean one as `true`/`false` (also `yes`/`no`, `t`/`f`, `1`/`0`, as training read it), text
    /// of a categorical one is the category; null tokens (`""`, `NA`, …) are null.
    fn scalar(&self, i: usize, kind: InputKind) -> Scalar<'_> {
        match self {
            Cells::F64(a) if a.is_null(i) => Scalar::Null,
            Cells::F64(a) => Scalar::F64(a.value(i)),
            Cells::I64(a) if a.is_null(i) => Scalar::Null,
            Cells::I64(a) => Scalar::I64(a.value(i)),
            Cells::Bool(a) if a.is_null(i) => Scalar::Null,
            Cells::Bool(a) => Scalar::Bool(a.value(i)),
            Cells::Text(a) if a.is_null(i) => Scalar::Null,
            Cells::Text(a) => {
                let s = a.value(i).trim();
                if keel_data::infer::is_null_token(s) {
                    return Scalar::Null;
                }
                match kind {
                    InputKind::Text => Scalar::Str(s.into()),
                    InputKind::Boolean => match keel_data::infer::parse_bool(s) {
                        Some(b) => Scalar::Bool(b),
                        None => Scalar::Str(s.into()),
                    },
                    InputKind::Numeric => match s.parse::<f64>() {
                        Ok(x) => Scalar::F64(x),
                        Err(_) => Scalar::Str(s.into()),
                    },
                }
            }
        }
    }
}

impl RequestSchema {
    /// Column-level problems of a table: an input column missing (a feature, or the timestamp time features
    /// are read from), and (unless `allow_extra`: batch files pass other columns through) columns that are
    /// not inputs.
    pub fn check_columns(&self, columns: &[&str], allow_extra: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for f in self.input_names() {
            if !columns.contains(&f) {
                errors.push(FieldError {
                    path: format!("$.columns.{f}"),
                    problem: "missing_field",
                    message: format!("input column '{f}' is required"),
                });
            }
        }
        if !allow_extra {
            for c in columns {
                if !self.input_names().any(|f| f == *c) {
                    errors.push(FieldError {
                        path: format!("$.columns.{c}"),
                        problem: "unknown_field",
                        message: format!("'{c}' is not an input of this model"),
                    });
                }
            }
        }
        errors
    }

    /// Checks and encodes every row of a table. Column-level problems ([`RequestSchema::check_columns`]) are
    /// the error; cell problems are per row in the result.
    pub fn check_table(
        &self,
        table: &keel_data::RawTable,
        allow_extra: bool,
    ) -> Result<TableCheck, Vec<FieldError>> {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let errors = self.check_columns(&names, allow_extra);
        if !errors.is_empty() {
            return Err(errors);
        }
        let nf = self.n_features();
        let names: Vec<&str> = self.input_names().collect();
        let mut cells = Vec::with_capacity(names.len());
        for f in &names {
            let col = table
                .columns
                .iter()
                .find(|c| c.name == *f)
                .expect("checked above");
            cells.push(Cells::of(&col.array).map_err(|m| {
                vec![FieldError {
                    path: format!("$.columns.{f}"),
                    problem: "wrong_type",
                    message: m,
                }]
            })?);
        }
        let mut out = TableCheck {
            rows: Vec::with_capacity(table.nrows * nf),
            good: Vec::with_capacity(table.nrows),
            bad: Vec::new(),
        };
        let mut row = vec![f64::NAN; nf];
        for i in 0..table.nrows {
            let mut problems = Vec::new();
            for (j, c) in cells.iter().enumerate() {
                match self.write_input(j, &c.scalar(i, self.input_kind(j)), &mut row) {
                    Ok(()) => {}
                    Err((problem, message)) => problems.push(FieldError {
                        path: format!("$.rows[{i}].{}", names[j]),
                        problem,
                        message,
                    }),
                }
            }
            if problems.is_empty() {
                out.rows.extend_from_slice(&row);
                out.good.push(i);
            } else {
                out.bad.push((i, problems));
            }
        }
        Ok(out)
    }
}
