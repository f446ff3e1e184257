//! The back office's lists as SQL, written once for every backend (as the refund rules are in
//! [`super::refund_rules`]): [`ListQuery::payments`] turns a [`PaymentFilter`] (and
//! [`ListQuery::refunds`] a [`RefundFilter`]) into conditions with typed values — which column,
//! which comparison, the text search and its escaping, the keyset cursor, the order and the
//! limit — and [`ListQuery::render`] writes them with a backend's [`Dialect`] (its placeholders
//! and its case-insensitive LIKE). The backend binds the values in the order given.

use super::ledger::{PaymentFilter, RefundFilter};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
}

/// One condition of a list, over its table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// `column op value`.
    Compare {
        column: &'static str,
        op: &'static str,
        value: SqlValue,
    },
    /// Any of `columns` matches `pattern`, ignoring case: a LIKE pattern, `\` its escape.
    Like {
        columns: &'static [&'static str],
        pattern: String,
    },
    /// `column` is one of `values` (`column IN (…)`); none of them: no row.
    OneOf {
        column: &'static str,
        values: Vec<String>,
    },
    /// `column IS NOT NULL`.
    Present { column: &'static str },
    /// The payment has a refund still pending.
    RefundPending,
    /// The row sorts after the cursor in the list's order (newest first): `(columns) < (values)`.
    Before {
        columns: &'static [&'static str],
        values: Vec<String>,
    },
}

/// The payment list's order: newest first, then merchant and order number (the cursor's keys).
pub const ORDER_BY: &str = "created_at DESC, merchant_id DESC, out_trade_no DESC";

/// The refund list's order: newest first by id (its cursor), the order refunds were stored in.
pub const REFUND_ORDER_BY: &str = "id DESC";

/// What `q` searches: the order number, the provider's trade number, the buyer, the subject (a
/// shop owner remembers "the wallet order", not its number).
pub const SEARCHED: &[&str] = &["out_trade_no", "trade_no", "buyer_email", "subject"];

/// What a refund list's `q` searches: the order number and the refund's request number.
pub const REFUNDS_SEARCHED: &[&str] = &["out_trade_no", "request_no"];

/// The cursor's keys within one merchant, and across merchants.
const CURSOR_ONE_MERCHANT: &[&str] = &["created_at", "out_trade_no"];
const CURSOR_ALL: &[&str] = &["created_at", "merchant_id", "out_trade_no"];

/// What a backend writes its own way.
pub trait Dialect {
    /// The placeholder of the `n`th bound value (from 1).
    fn placeholder(n: usize) -> String;
    /// `column` matches the LIKE pattern bound at `placeholder` (escape `\`), ignoring case.
    fn like(column: &str, placeholder: &str) -> String;
}

/// A page of a list as conditions, order and limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub clauses: Vec<Clause>,
    pub order_by: &'static str,
    pub limit: u32,
}

/// A rendered query's tail (after `FROM payments`) and its values, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub sql: String,
    pub values: Vec<SqlValue>,
}

/// The filters both lists have, over columns of the same names (`merchant_id`, `status`,
/// `created_at`).
struct Shared<'a> {
    merchant: &'a Option<String>,
    merchants: &'a Option<Vec<String>>,
    status: &'a Option<String>,
    from: &'a Option<String>,
    to: &'a Option<String>,
}

fn shared_clauses(f: Shared<'_>) -> Vec<Clause> {
    let text = |v: &String| SqlValue::Text(v.clone());
    let compare = |column, op, value| Clause::Compare { column, op, value };
    let mut clauses = Vec::new();
    if let Some(m) = f.merchant {
        clauses.push(compare("merchant_id", "=", text(m)));
    }
    if let Some(ms) = f.merchants {
        clauses.push(Clause::OneOf {
            column: "merchant_id",
            values: ms.clone(),
        });
    }
    if let Some(s) = f.status {
        clauses.push(compare("status", "=", text(s)));
    }
    if let Some(v) = f.from {
        clauses.push(compare("created_at", ">=", text(v)));
    }
    if let Some(v) = f.to {
        clauses.push(compare("created_at", "<", text(v)));
    }
    clauses
}

impl ListQuery {
    pub fn payments(f: &PaymentFilter) -> ListQuery {
        let compare = |column, op, value| Clause::Compare { column, op, value };
        let mut clauses = shared_clauses(Shared {
            merchant: &f.merchant,
            merchants: &f.merchants,
            status: &f.status,
            from: &f.from,
            to: &f.to,
        });
        if let Some(v) = f.min_fen {
            clauses.push(compare("total_fen", ">=", SqlValue::Int(v as i64)));
        }
        if let Some(v) = f.max_fen {
            clauses.push(compare("total_fen", "<=", SqlValue::Int(v as i64)));
        }
        if f.review {
            clauses.push(Clause::Present { column: "review" });
        }
        if f.refund_pending {
            clauses.push(Clause::RefundPending);
        }
        if let Some(q) = &f.q {
            clauses.push(Clause::Like {
                columns: SEARCHED,
                pattern: like_pattern(q),
            });
        }
        if let Some(c) = &f.cursor {
            // Within one merchant its id is the same on every row: the index is
            // (merchant_id, created_at, out_trade_no).
            clauses.push(if f.merchant.is_some() {
                Clause::Before {
                    columns: CURSOR_ONE_MERCHANT,
                    values: vec![c.created_at.clone(), c.out_trade_no.clone()],
                }
            } else {
                Clause::Before {
                    columns: CURSOR_ALL,
                    values: vec![
                        c.created_at.clone(),
                        c.merchant_id.clone(),
                        c.out_trade_no.clone(),
                    ],
                }
            });
        }
        ListQuery {
            clauses,
            order_by: ORDER_BY,
            limit: f.limit,
        }
    }

    /// The totals of a filter: every page of it (no cursor), as [`totals_sql`] counts them.
    pub fn payment_totals(f: &PaymentFilter) -> ListQuery {
        ListQuery::payments(&PaymentFilter {
            cursor: None,
            ..f.clone()
        })
    }

    /// A page of the refund list (over the `refunds` table), newest first.
    pub fn refunds(f: &RefundFilter) -> ListQuery {
        let compare = |column, op, value| Clause::Compare { column, op, value };
        let mut clauses = shared_clauses(Shared {
            merchant: &f.merchant,
            merchants: &f.merchants,
            status: &f.status,
            from: &f.from,
            to: &f.to,
        });
        if let Some(t) = &f.completed_from {
            clauses.push(compare("completed_at", ">=", SqlValue::Text(t.clone())));
        }
        if let Some(t) = &f.completed_to {
            clauses.push(compare("completed_at", "<", SqlValue::Text(t.clone())));
        }
        if let Some(q) = &f.q {
            clauses.push(Clause::Like {
                columns: REFUNDS_SEARCHED,
                pattern: like_pattern(q),
            });
        }
        if let Some(id) = f.before_id {
            clauses.push(compare("id", "<", SqlValue::Int(id)));
        }
        ListQuery {
            clauses,
            order_by: REFUND_ORDER_BY,
            limit: f.limit,
        }
    }

    /// The totals of a refund filter: every page of it, as [`refund_totals_sql`] counts them.
    pub fn refund_totals(f: &RefundFilter) -> ListQuery {
        ListQuery::refunds(&RefundFilter {
            before_id: None,
            ..f.clone()
        })
    }

    /// ` WHERE … ORDER BY … LIMIT ?` in `D`'s words (no WHERE without a condition).
    pub fn render<D: Dialect>(&self) -> Rendered {
        let Rendered {
            mut sql,
            mut values,
        } = self.render_conditions::<D>();
        values.push(SqlValue::Int(i64::from(self.limit)));
        let limit = D::placeholder(values.len());
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", self.order_by));
        Rendered { sql, values }
    }

    /// ` WHERE …` alone (the totals of a filter: every page of it, so no cursor is given).
    pub fn render_conditions<D: Dialect>(&self) -> Rendered {
        let mut values = Vec::new();
        let mut bind = |v: SqlValue| {
            values.push(v);
            D::placeholder(values.len())
        };
        let conditions: Vec<String> = self
            .clauses
            .iter()
            .map(|c| match c {
                Clause::Compare { column, op, value } => {
                    format!("{column} {op} {}", bind(value.clone()))
                }
                Clause::Like { columns, pattern } => {
                    let p = bind(SqlValue::Text(pattern.clone()));
                    let any: Vec<String> = columns.iter().map(|c| D::like(c, &p)).collect();
                    format!("({})", any.join(" OR "))
                }
                // `IN ()` is no SQL: an empty set matches nothing, in every backend's words.
                Clause::OneOf { values, .. } if values.is_empty() => "1 = 0".to_owned(),
                Clause::OneOf { column, values } => {
                    let at: Vec<String> = values
                        .iter()
                        .map(|v| bind(SqlValue::Text(v.clone())))
                        .collect();
                    format!("{column} IN ({})", at.join(", "))
                }
                Clause::Present { column } => format!("{column} IS NOT NULL"),
                Clause::RefundPending => "EXISTS (SELECT 1 FROM refunds WHERE refunds.merchant_id = payments.merchant_id AND refunds.out_trade_no = payments.out_trade_no AND refunds.status = 'PENDING')".to_owned(),
                Clause::Before { columns, values } => {
                    let at: Vec<String> = values
                        .iter()
                        .map(|v| bind(SqlValue::Text(v.clone())))
                        .collect();
                    format!("({}) < ({})", columns.join(", "), at.join(", "))
                }
            })
            .collect();
        let mut sql = String::new();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        Rendered { sql, values }
    }
}

/// The five columns of [`super::ledger::FilterTotals`] over `payments` and `tail` (a rendered
/// [`ListQuery::payment_totals`]): `paid` is the backend's list of paid statuses, `cast` what makes
/// its sums 64-bit integers (PostgreSQL's `SUM` of a `BIGINT` is `NUMERIC`).
pub fn totals_sql(paid: &str, cast: &str, tail: &str) -> String {
    format!(
        "SELECT COUNT(*){cast}, COALESCE(SUM(total_fen), 0){cast},
                COALESCE(SUM(CASE WHEN status IN {paid} THEN 1 ELSE 0 END), 0){cast},
                COALESCE(SUM(CASE WHEN status IN {paid} THEN total_fen ELSE 0 END), 0){cast},
                COALESCE(SUM(refunded_fen), 0){cast}
         FROM payments{tail}"
    )
}

/// The columns of [`super::ledger::RefundTotals`] (`COLUMNS` of them) over `refunds` and `tail`
/// (a rendered [`ListQuery::refund_totals`]); `cast` as for [`totals_sql`].
pub fn refund_totals_sql(cast: &str, tail: &str) -> String {
    let by = |status: &str| {
        format!(
            "COALESCE(SUM(CASE WHEN status = '{status}' THEN 1 ELSE 0 END), 0){cast},
             COALESCE(SUM(CASE WHEN status = '{status}' THEN amount_fen ELSE 0 END), 0){cast}"
        )
    };
    format!(
        "SELECT COUNT(*){cast}, COALESCE(SUM(amount_fen), 0){cast}, {}, {}, {} FROM refunds{tail}",
        by("SUCCESS"),
        by("PENDING"),
        by("FAILED")
    )
}

/// `%q%` for LIKE, its wildcards (and the escape itself) escaped with `\`.
pub fn like_pattern(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 2);
    s.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::Cursor;

    /// `$n` placeholders and a plain `ILIKE`, to see the rendering apart from any backend.
    struct Numbered;
    impl Dialect for Numbered {
        fn placeholder(n: usize) -> String {
            format!("${n}")
        }
        fn like(column: &str, placeholder: &str) -> String {
            format!("{column} ILIKE {placeholder}")
        }
    }

    fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.to_owned())
    }

    fn every_field(merchant: Option<&str>) -> PaymentFilter {
        PaymentFilter {
            merchant: merchant.map(str::to_owned),
            merchants: None,
            status: Some("TRADE_SUCCESS".into()),
            from: Some("2024-05-01T00:00:00Z".into()),
            to: Some("2024-06-01T00:00:00Z".into()),
            q: Some("50%_a\\b".into()),
            min_fen: Some(100),
            max_fen: Some(999),
            review: true,
            refund_pending: true,
            cursor: Some(Cursor {
                created_at: "2024-05-20T08:00:00Z".into(),
                merchant_id: "m1".into(),
                out_trade_no: "A-9".into(),
            }),
            limit: 51,
        }
    }

    #[test]
    fn every_field_is_one_clause_with_its_typed_value() {
        let q = ListQuery::payments(&every_field(Some("m1")));
        assert_eq!(q.limit, 51);
        assert_eq!(
            q.clauses,
            vec![
                Clause::Compare {
                    column: "merchant_id",
                    op: "=",
                    value: text("m1")
                },
                Clause::Compare {
                    column: "status",
                    op: "=",
                    value: text("TRADE_SUCCESS")
                },
                Clause::Compare {
                    column: "created_at",
                    op: ">=",
                    value: text("2024-05-01T00:00:00Z")
                },
                Clause::Compare {
                    column: "created_at",
                    op: "<",
                    value: text("2024-06-01T00:00:00Z")
                },
                Clause::Compare {
                    column: "total_fen",
                    op: ">=",
                    value: SqlValue::Int(100)
                },
                Clause::Compare {
                    column: "total_fen",
                    op: "<=",
                    value: SqlValue::Int(999)
                },
                Clause::Present { column: "review" },
                Clause::RefundPending,
                // The wildcards and the escape character are literal text of the search.
                Clause::Like {
                    columns: &["out_trade_no", "trade_no", "buyer_email", "subject"],
                    pattern: "%50\\%\\_a\\\\b%".into()
                },
                // One merchant: the cursor's merchant is not compared.
                Clause::Before {
                    columns: &["created_at", "out_trade_no"],
                    values: vec!["2024-05-20T08:00:00Z".into(), "A-9".into()]
                },
            ]
        );
    }

    #[test]
    fn renders_placeholders_in_binding_order() {
        let r = ListQuery::payments(&every_field(None)).render::<Numbered>();
        assert_eq!(
            r.sql,
            " WHERE status = $1 AND created_at >= $2 AND created_at < $3 AND total_fen >= $4 \
             AND total_fen <= $5 AND review IS NOT NULL \
             AND EXISTS (SELECT 1 FROM refunds WHERE refunds.merchant_id = payments.merchant_id \
             AND refunds.out_trade_no = payments.out_trade_no AND refunds.status = 'PENDING') \
             AND (out_trade_no ILIKE $6 OR trade_no ILIKE $6 OR buyer_email ILIKE $6 OR subject ILIKE $6) \
             AND (created_at, merchant_id, out_trade_no) < ($7, $8, $9) \
             ORDER BY created_at DESC, merchant_id DESC, out_trade_no DESC LIMIT $10"
        );
        assert_eq!(
            r.values,
            vec![
                text("TRADE_SUCCESS"),
                text("2024-05-01T00:00:00Z"),
                text("2024-06-01T00:00:00Z"),
                SqlValue::Int(100),
                SqlValue::Int(999),
                text("%50\\%\\_a\\\\b%"),
                text("2024-05-20T08:00:00Z"),
                text("m1"),
                text("A-9"),
                SqlValue::Int(51),
            ]
        );
    }

    #[test]
    fn a_set_of_merchants_is_one_in_clause_and_an_empty_set_matches_nothing() {
        let of = |merchants: Vec<&str>| {
            ListQuery::payments(&PaymentFilter {
                merchants: Some(merchants.into_iter().map(str::to_owned).collect()),
                q: Some("A".into()),
                limit: 5,
                ..PaymentFilter::default()
            })
            .render_conditions::<Numbered>()
        };
        let two = of(vec!["m1", "m2"]);
        assert_eq!(
            two.sql,
            " WHERE merchant_id IN ($1, $2) AND (out_trade_no ILIKE $3 OR trade_no ILIKE $3 OR buyer_email ILIKE $3 OR subject ILIKE $3)"
        );
        assert_eq!(two.values, vec![text("m1"), text("m2"), text("%A%")]);
        let none = of(vec![]);
        assert_eq!(
            none.sql,
            " WHERE 1 = 0 AND (out_trade_no ILIKE $1 OR trade_no ILIKE $1 OR buyer_email ILIKE $1 OR subject ILIKE $1)"
        );
        assert_eq!(none.values, vec![text("%A%")]);
    }

    #[test]
    fn no_filter_is_the_order_and_the_limit_only() {
        let r = ListQuery::payments(&PaymentFilter {
            limit: 1,
            ..PaymentFilter::default()
        })
        .render::<Numbered>();
        assert_eq!(
            r.sql,
            " ORDER BY created_at DESC, merchant_id DESC, out_trade_no DESC LIMIT $1"
        );
        assert_eq!(r.values, vec![SqlValue::Int(1)]);
    }

    #[test]
    fn a_refund_filter_renders_over_the_refunds_columns_newest_first() {
        let r = ListQuery::refunds(&RefundFilter {
            merchant: None,
            merchants: Some(vec!["m1".into()]),
            status: Some("SUCCESS".into()),
            from: Some("2024-05-01T00:00:00Z".into()),
            to: Some("2024-06-01T00:00:00Z".into()),
            completed_from: Some("2024-05-02T00:00:00Z".into()),
            completed_to: Some("2024-06-02T00:00:00Z".into()),
            q: Some("R_1".into()),
            before_id: Some(42),
            limit: 51,
        })
        .render::<Numbered>();
        assert_eq!(
            r.sql,
            " WHERE merchant_id IN ($1) AND status = $2 AND created_at >= $3 AND created_at < $4 \
             AND completed_at >= $5 AND completed_at < $6 \
             AND (out_trade_no ILIKE $7 OR request_no ILIKE $7) AND id < $8 ORDER BY id DESC LIMIT $9"
        );
        assert_eq!(
            r.values,
            vec![
                text("m1"),
                text("SUCCESS"),
                text("2024-05-01T00:00:00Z"),
                text("2024-06-01T00:00:00Z"),
                text("2024-05-02T00:00:00Z"),
                text("2024-06-02T00:00:00Z"),
                text("%R\\_1%"),
                SqlValue::Int(42),
                SqlValue::Int(51),
            ]
        );
        // The totals count every page: the cursor is not a condition of them.
        let totals = ListQuery::refund_totals(&RefundFilter {
            before_id: Some(42),
            limit: 1,
            ..RefundFilter::default()
        })
        .render_conditions::<Numbered>();
        assert_eq!((totals.sql.as_str(), totals.values.len()), ("", 0));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("abc"), "%abc%");
        assert_eq!(like_pattern("%"), "%\\%%");
        assert_eq!(like_pattern("a_b"), "%a\\_b%");
        assert_eq!(like_pattern("订单\\"), "%订单\\\\%");
    }
}
