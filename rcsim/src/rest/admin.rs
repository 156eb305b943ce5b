//! What an operator tool reads: settings and permissions (admin only).

use super::{Ctx, Reply};
use serde_json::{json, Value};

/// `GET settings/:_id` (needs `view-privileged-setting`: admins).
pub fn setting(ctx: &mut Ctx) -> Reply {
    if !ctx.can("view-privileged-setting") {
        return Reply::forbidden();
    }
    let id = ctx.arg.clone().unwrap_or_default();
    let s = ctx.sim.settings();
    let value: Value = match id.as_str() {
        "API_Enable_Rate_Limiter" => json!(s.rest_rate_limiter),
        "API_Enable_Rate_Limiter_Limit_Calls_Default" => json!(s.rest_rate_limit_calls),
        "API_Enable_Rate_Limiter_Limit_Time_Default" => {
            json!(s.rest_rate_limit_window.as_millis() as u64)
        }
        "Accounts_TwoFactorAuthentication_Enabled" => json!(s.two_factor_on_update),
        "Accounts_TwoFactorAuthentication_By_Email_Enabled" => json!(s.email_2fa_enabled),
        "Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In" => json!(s.email_2fa_auto_opt_in),
        "Block_Multiple_Failed_Logins_Enabled" => json!(s.block_failed_logins),
        "Accounts_LoginExpiration" => json!(s.login_expiration_days),
        _ => {
            return Reply::raw(
                400,
                json!({"success": false, "error": "rcsim does not simulate this setting"}),
            )
        }
    };
    Reply::ok(json!({"_id": id, "value": value}))
}

/// `GET permissions.listAll`: `{update: [{_id, roles}], remove: []}`.
pub fn permissions(ctx: &mut Ctx) -> Reply {
    let mut update: Vec<Value> = ctx
        .sim
        .permissions
        .read()
        .iter()
        .map(|(id, roles)| json!({"_id": id, "roles": roles}))
        .collect();
    update.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    Reply::ok(json!({"update": update, "remove": []}))
}
