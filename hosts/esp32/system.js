/*
 * esp_restart() and esp_reset_reason() (system.c). The SDK offers a restart only through the
 * ECMA-419 System object, which would pull in the whole embedded:provider/builtin, and no reset
 * reason at all.
 */
export function restart() @ "xs_azure_restart";
export function resetReason() @ "xs_azure_reset_reason";
/* Device Update: the next OTA partition's size, and ESP-IDF's app rollback (system.c). */
export function otaCapacity() @ "xs_azure_ota_capacity";
export function otaState() @ "xs_azure_ota_state";
export function otaConfirm() @ "xs_azure_ota_confirm";
export function otaRollback() @ "xs_azure_ota_rollback";
