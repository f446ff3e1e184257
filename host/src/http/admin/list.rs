//! What the back office's lists share: the merchant filter as a shop owner may apply it, a
//! link's query of the filters typed, and the pager that goes back as well as forwards over a
//! list paged by cursor (the payments, the refunds).

use super::{words, Ctx};
use crate::store::ledger::Cursor;

/// A list the pager links to: its page and how to know one of its cursors.
pub struct List {
    pub path: &'static str,
    pub is_cursor: fn(&str) -> bool,
}

pub const PAYMENTS: List = List {
    path: "/admin/payments",
    is_cursor: |c| Cursor::decode(c).is_some(),
};

pub const REFUNDS: List = List {
    path: "/admin/refunds",
    is_cursor: |c| crate::refund_list::decode_cursor(c).is_some(),
};

/// The merchant a shop owner asked for that is not theirs (an old link, a typed URL): never
/// shown, their own merchants are, and the page says so. None for an operator.
pub fn not_theirs(ctx: &Ctx) -> Option<&str> {
    let asked = ctx.q("merchant").trim();
    (!asked.is_empty() && !ctx.who.sees(asked)).then_some(asked)
}

/// What a list says to a shop owner who asked for another merchant's rows (an old link, a typed
/// URL): they see their own merchants', and are told so rather than left to wonder.
pub fn not_theirs_notice(ctx: &Ctx) -> Option<String> {
    not_theirs(ctx).map(|asked| {
        format!(
            "{} {asked}{} {}",
            ctx.t("你不能查看商户", "You cannot see merchant"),
            ctx.t(
                "，这里列出的是你自己的商户：",
                "; these are your own merchants':"
            ),
            ctx.who.merchants.join(ctx.t("、", ", "))
        )
    })
}

/// The merchant filter as the page applies it: as typed, but empty (all of a shop owner's
/// merchants, see [`crate::ledger::within`]) in place of one that is not theirs.
pub fn merchant_filter(ctx: &Ctx) -> String {
    match not_theirs(ctx) {
        Some(_) => String::new(),
        None => ctx.q("merchant").trim().to_owned(),
    }
}

/// A list's filters as typed (kept in the form and the links: the merchant as
/// [`merchant_filter`] applies it, amounts and search text typed with a Chinese input method's
/// full-width characters as their half-width selves), and the query the ledger parses: those
/// and the page's cursor.
pub fn typed_filters(ctx: &Ctx, fields: &[&'static str]) -> (Vec<(&'static str, String)>, String) {
    let typed: Vec<(&'static str, String)> = fields
        .iter()
        .map(|name| {
            let v = match *name {
                "merchant" => merchant_filter(ctx),
                "min_amount" | "max_amount" => words::half_width_amount(ctx.q(name)),
                // Order, trade and refund numbers are ASCII: one typed with full-width letters
                // (ＯＰ１２０５) is the same number.
                "q" => words::half_width(ctx.q(name)).trim().to_owned(),
                _ => ctx.q(name).trim().to_owned(),
            };
            (*name, v)
        })
        .collect();
    let mut query = query_of(&typed, &[]);
    let cursor = ctx.q("cursor");
    if !cursor.is_empty() {
        query.push_str(&format!("&cursor={}", super::enc(cursor)));
    }
    (typed, query)
}

/// A list's filters as typed (kept in the form and the links) and as the ledger takes them;
/// refused, the ledger's default (no list is shown) and the page's words for why.
pub struct Filters<F> {
    pub typed: Vec<(&'static str, String)>,
    pub filter: F,
    pub errors: Vec<String>,
    /// The refused filter's field (`from`, `min_amount`, …): the form marks it.
    pub bad_field: Option<String>,
}

/// A ledger filter for this session: an operator's as it is, a shop owner's limited to their
/// merchants (`within`: the list's rule for that).
pub fn scoped<F>(
    ctx: &Ctx,
    f: F,
    within: fn(F, &[String]) -> Result<F, crate::http::error::ApiError>,
) -> Result<F, crate::http::error::ApiError> {
    match ctx.who.only() {
        None => Ok(f),
        Some(mine) => within(f, mine),
    }
}

/// A list page's filters: `fields` as typed, checked by the ledger's own `parse` (the API's
/// rules) and scoped to the session's merchants. No list until a refused filter is fixed: a list
/// without it would show rows the owner did not ask for (another merchant's, another day's) as
/// if they matched.
pub fn checked_filters<F: Default>(
    ctx: &Ctx,
    fields: &[&'static str],
    parse: fn(Option<&str>, Option<&str>) -> Result<F, crate::http::error::ApiError>,
    within: fn(F, &[String]) -> Result<F, crate::http::error::ApiError>,
) -> Filters<F> {
    let (typed, query) = typed_filters(ctx, fields);
    match parse(Some(&query), None).and_then(|f| scoped(ctx, f, within)) {
        Ok(filter) => Filters {
            typed,
            filter,
            errors: Vec::new(),
            bad_field: None,
        },
        Err(e) => {
            let said = filter_refusal(ctx, &typed, &e);
            Filters {
                typed,
                filter: F::default(),
                errors: vec![said],
                bad_field: e.field.clone(),
            }
        }
    }
}

/// A refused filter in the page's words, naming the field as the page labels it.
pub fn filter_refusal(
    ctx: &Ctx,
    typed: &[(&'static str, String)],
    e: &crate::http::error::ApiError,
) -> String {
    let typed_value = |name: &str| {
        typed
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // The refund list is the one with completion dates.
    let dates = match typed.iter().any(|(k, _)| *k == "completed_from") {
        true => words::REFUND_DATES,
        false => words::PAYMENT_DATES,
    };
    words::filter_error(ctx.lang, e, &typed_value, dates)
}

/// A CSV link's query as the ledger takes it: without the admin's own `lang` (the language
/// switch adds it to any page's link; the ledger's filters would refuse it as unknown), and
/// amounts and search text typed full-width taken as their half-width selves, as the list
/// does ([`typed_filters`]): a hand-typed or bookmarked link exports what the list shows.
pub fn without_lang(query: Option<&str>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "lang")
                .map(|(k, v)| {
                    let v = match k.as_ref() {
                        "min_amount" | "max_amount" => words::half_width_amount(&v),
                        "q" => words::half_width(&v).trim().to_owned(),
                        _ => v.into_owned(),
                    };
                    (k, v)
                }),
        )
        .finish()
}

/// A list link's query: the filters typed (the empty ones left out), then `extra`.
pub fn query_of(typed: &[(&str, String)], extra: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            typed
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (*k, v.as_str())),
        )
        .extend_pairs(extra.iter().copied())
        .finish()
}

/// The most earlier pages a list link remembers for 上一页 (each a cursor of about 60 to 150
/// characters); past it the link says it forgot (`back=~`) and only 第一页 goes back.
const MAX_BACK: usize = 30;

/// The links of the list's pager.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pages {
    pub first: Option<String>,
    pub prev: Option<String>,
    pub next: Option<String>,
    /// Which page this is (1 for the first), when the link still knows the pages before it.
    pub number: Option<usize>,
}

/// How many pages `total` rows fill, `per_page` to a page (one, empty, for none).
pub fn page_count(total: u64, per_page: u32) -> u64 {
    total.div_ceil(u64::from(per_page.max(1))).max(1)
}

/// The pager of a page of a list. A list pages by cursor (where a page starts), which only
/// goes forwards: each link carries the cursors of the pages before it (`back`, oldest first,
/// joined by `.`, which no list's cursor holds) so that 上一页 is the link of the page before.
/// `cursor` is this page's (None on the first page), `next` where the next page starts.
pub fn pager(
    list: &List,
    typed: &[(&str, String)],
    cursor: Option<&str>,
    back: &str,
    next: Option<String>,
) -> Pages {
    let link = |extra: &[(&str, &str)]| format!("{}?{}", list.path, query_of(typed, extra));
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Pages {
            next: next.map(|n| link(&[("cursor", &n)])),
            number: Some(1),
            ..Pages::default()
        };
    };
    // The cursors of the pages before this one but the first (which has none); None when the
    // link forgot them, or they are not cursors this page handed out.
    let earlier: Option<Vec<&str>> = match back {
        "~" => None,
        "" => Some(Vec::new()),
        b => {
            let cursors: Vec<&str> = b.split('.').collect();
            cursors
                .iter()
                .all(|c| (list.is_cursor)(c))
                .then_some(cursors)
        }
    };
    let prev = earlier.as_ref().map(|e| match e.split_last() {
        None => link(&[]),
        Some((last, [])) => link(&[("cursor", last)]),
        Some((last, before)) => link(&[("cursor", last), ("back", &before.join("."))]),
    });
    let next = next.map(|n| {
        let back = match &earlier {
            Some(e) if e.len() < MAX_BACK => {
                let mut all = e.clone();
                all.push(cursor);
                all.join(".")
            }
            _ => "~".to_owned(),
        };
        link(&[("cursor", &n), ("back", &back)])
    });
    Pages {
        first: Some(link(&[])),
        number: earlier.as_ref().map(|e| e.len() + 2),
        prev,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(no: &str) -> String {
        Cursor {
            created_at: "2026-12-04T00:00:00Z".into(),
            merchant_id: "demo".into(),
            out_trade_no: no.into(),
        }
        .encode()
    }

    /// The query values of a link.
    fn q(link: &str, name: &str) -> String {
        let query = link.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    /// Follows a link as the list would: its cursor and back.
    fn page_of(typed: &[(&str, String)], link: &str, next: Option<String>) -> Pages {
        let c = q(link, "cursor");
        pager(
            &PAYMENTS,
            typed,
            Some(c.as_str()).filter(|c| !c.is_empty()),
            &q(link, "back"),
            next,
        )
    }

    #[test]
    fn previous_page_goes_back_one_page_at_a_time() {
        let typed = vec![("q", "x".to_owned()), ("status", String::new())];
        // Page 1: no way back; its next link starts page 2.
        let p1 = pager(&PAYMENTS, &typed, None, "", Some(cursor("A")));
        assert_eq!(p1.first, None);
        assert_eq!(p1.prev, None);
        let to2 = p1.next.clone().unwrap();
        assert_eq!(q(&to2, "q"), "x", "the filters are kept");
        // Page 2: back to page 1; on to page 3.
        let p2 = page_of(&typed, &to2, Some(cursor("B")));
        assert_eq!(p2.prev.as_deref(), Some("/admin/payments?q=x"));
        assert_eq!(p2.first.as_deref(), Some("/admin/payments?q=x"));
        let to3 = p2.next.clone().unwrap();
        // Page 3: back to page 2 (the same link page 1 had), then on to 4 and back to 3.
        let p3 = page_of(&typed, &to3, Some(cursor("C")));
        assert_eq!(q(p3.prev.as_deref().unwrap(), "cursor"), q(&to2, "cursor"));
        let back_at_2 = page_of(&typed, p3.prev.as_deref().unwrap(), Some(cursor("B")));
        assert_eq!(back_at_2.next.as_deref(), Some(to3.as_str()));
        let to4 = p3.next.clone().unwrap();
        let p4 = page_of(&typed, &to4, None);
        assert_eq!(
            [p1.number, p2.number, p3.number, back_at_2.number, p4.number],
            [Some(1), Some(2), Some(3), Some(2), Some(4)],
            "each page knows its number"
        );
        assert_eq!(p4.next, None);
        assert_eq!(q(p4.prev.as_deref().unwrap(), "cursor"), q(&to3, "cursor"));
        assert_eq!(q(p4.prev.as_deref().unwrap(), "back"), q(&to3, "back"));
    }

    #[test]
    fn a_forgotten_or_altered_trail_has_no_previous_page() {
        let typed = vec![("q", String::new())];
        let c = cursor("A");
        for back in ["~", "not-a-cursor!", "AAAA"] {
            let p = pager(&PAYMENTS, &typed, Some(&c), back, Some(cursor("B")));
            assert_eq!(p.prev, None, "{back}");
            assert_eq!(p.number, None, "{back}: which page is not known");
            assert!(p.first.is_some());
            assert_eq!(q(p.next.as_deref().unwrap(), "back"), "~", "{back}");
        }
        // A long walk stops remembering rather than growing the link without end.
        let long = vec![cursor("Z"); MAX_BACK].join(".");
        let p = pager(&PAYMENTS, &typed, Some(&c), &long, Some(cursor("B")));
        assert!(p.prev.is_some());
        assert_eq!(q(p.next.as_deref().unwrap(), "back"), "~");
    }

    #[test]
    fn pages_are_counted_up() {
        assert_eq!(page_count(0, 50), 1);
        assert_eq!(page_count(1, 50), 1);
        assert_eq!(page_count(50, 50), 1);
        assert_eq!(page_count(51, 50), 2);
        assert_eq!(page_count(1_000_001, 50), 20_001);
    }

    #[test]
    fn the_refund_list_pages_by_its_own_cursors() {
        let typed = vec![("status", "SUCCESS".to_owned())];
        let r = |id| crate::refund_list::encode_cursor(id);
        let p = pager(&REFUNDS, &typed, Some(&r(90)), &r(140), Some(r(40)));
        assert_eq!(
            p.prev.as_deref(),
            Some("/admin/refunds?status=SUCCESS&cursor=r140")
        );
        assert_eq!(q(p.next.as_deref().unwrap(), "back"), "r140.r90");
        // A payment list's cursor is not one of the refund list's.
        let p = pager(&REFUNDS, &typed, Some(&r(90)), &cursor("A"), None);
        assert_eq!(p.prev, None);
    }
}
