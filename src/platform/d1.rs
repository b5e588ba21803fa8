//! The `Database` port on D1 (binding `DB`). A missing binding is an error
//! of each call (503 for the request), not of the Worker.

use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use crate::ports::{Arg, Database, Fut, Row, Stmt, StoreError};

pub struct D1(Result<D1Database, String>);

impl D1 {
    pub fn from_env(env: &Env) -> D1 {
        D1(env.d1("DB").map_err(|e| e.to_string()))
    }
}

fn store_error(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

fn js(arg: &Arg) -> JsValue {
    match arg {
        Arg::Null => JsValue::NULL,
        // D1 binds JavaScript numbers; every integer here is below 2^53.
        Arg::Int(n) => JsValue::from_f64(*n as f64),
        Arg::Text(s) => JsValue::from_str(s),
    }
}

fn rows(result: &D1Result) -> Result<Vec<Row>, StoreError> {
    result.results::<Row>().map_err(store_error)
}

impl Database for D1 {
    fn batch(&self, stmts: Vec<Stmt>) -> Fut<'_, Result<Vec<Vec<Row>>, StoreError>> {
        Box::pin(async move {
            let db = self.0.as_ref().map_err(|e| StoreError(e.clone()))?;
            let prepared = stmts
                .iter()
                .map(|s| db.prepare(&*s.sql).bind(&s.args.iter().map(js).collect::<Vec<_>>()))
                .collect::<worker::Result<Vec<D1PreparedStatement>>>()
                .map_err(store_error)?;
            let results = match <[D1PreparedStatement; 1]>::try_from(prepared) {
                // One statement needs no transaction of its own.
                Ok([one]) => vec![one.all().await.map_err(store_error)?],
                Err(many) => db.batch(many).await.map_err(store_error)?,
            };
            results.iter().map(rows).collect()
        })
    }
}
