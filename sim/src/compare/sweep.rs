//! `--sweep <parameter>=<v1>,<v2>,...`: one workload parameter taking each value in turn, the
//! rest of the workload fixed. Each value is checked against the parameter (and the rest of the
//! workload) before anything runs.

use super::workload::{param, unknown, Param, Workload, WorkloadError};

/// `--sweep <parameter>=<v1>,<v2>,...`: one workload parameter taking each value in turn.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// The parameter swept.
    pub param: &'static Param,
    /// Its values, as given (each checked against the parameter).
    pub values: Vec<String>,
}

impl Sweep {
    /// Parses `name=v1,v2,...`, checking each value against the parameter and `base`.
    pub fn parse(text: &str, base: &Workload) -> Result<Sweep, WorkloadError> {
        let bad = |reason: String| WorkloadError::BadSweep { text: text.to_owned(), reason };
        let (name, values) = text.split_once('=').ok_or_else(|| {
            bad("write <parameter>=<value>,<value>,..., e.g. identity_ttl=1m,10m,1h,1d".into())
        })?;
        let param = param(name.trim()).ok_or_else(|| unknown(name.trim()))?;
        if !param.kind.sweepable() {
            return Err(bad(format!(
                "{} cannot be swept: sweep a number or a duration",
                param.name
            )));
        }
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
        if values.iter().any(String::is_empty) {
            return Err(bad("an empty value: separate the values with single commas".into()));
        }
        for (i, value) in values.iter().enumerate() {
            if values[..i].contains(value) {
                return Err(bad(format!("the value {value} is given twice")));
            }
            base.at(param.name, value)?;
        }
        Ok(Sweep { param, values })
    }
}

impl Workload {
    /// This workload with one parameter changed (a sweep point), checked.
    pub fn at(&self, name: &str, value: &str) -> Result<Workload, WorkloadError> {
        let mut point = self.clone();
        point.set(name, value)?;
        point.validate()?;
        Ok(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_checks_each_value() {
        let base = Workload::default();
        let sweep = Sweep::parse("identity_ttl=1m, 10m,1h,1d", &base).unwrap();
        assert_eq!(sweep.values, ["1m", "10m", "1h", "1d"]);
        let e = Sweep::parse("identity_ttl=1m,ten", &base).unwrap_err().to_string();
        assert!(e.starts_with("bad value \"ten\" for identity_ttl"), "{e}");
        let e = Sweep::parse("think_min=1s,9h", &base).unwrap_err().to_string();
        assert!(e.starts_with("think_min (9h) is above think_max (8h)"), "{e}");
        assert!(Sweep::parse("fault_kinds=reset", &base).is_err());
        assert!(Sweep::parse("identity_ttl=1m,1m", &base).is_err());
    }
}
