/*
 * esp_restart() for a "reboot" command, and esp_reset_reason() in words, so that a device that
 * restarted (a panic, a watchdog, a brownout, an XS abort) says why after boot (see system.js).
 */
#include "xsmc.h"
#include "esp_system.h"

void xs_azure_restart(xsMachine *the)
{
	esp_restart();
}

void xs_azure_reset_reason(xsMachine *the)
{
	const char *reason;
	switch (esp_reset_reason()) {
		case ESP_RST_POWERON: reason = "power-on"; break;
		case ESP_RST_EXT: reason = "external-pin"; break;
		case ESP_RST_SW: reason = "software"; break;
		case ESP_RST_PANIC: reason = "panic"; break;
		case ESP_RST_INT_WDT: reason = "interrupt-watchdog"; break;
		case ESP_RST_TASK_WDT: reason = "task-watchdog"; break;
		case ESP_RST_WDT: reason = "watchdog"; break;
		case ESP_RST_DEEPSLEEP: reason = "deep-sleep"; break;
		case ESP_RST_BROWNOUT: reason = "brownout"; break;
		case ESP_RST_SDIO: reason = "sdio"; break;
		default: reason = "unknown"; break;
	}
	xsmcSetString(xsResult, (char *)reason);
}

/*
 * Device Update (hosts/esp32/images.ts): the size of the next OTA partition, and ESP-IDF's app
 * rollback. The bootloader goes back to the previous image when a new one restarts without having
 * been marked valid; that needs CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (hosts/esp32/sdkconfig).
 * Not yet run on a board (docs/device-update.md).
 */
#include "esp_ota_ops.h"

void xs_azure_ota_capacity(xsMachine *the)
{
	const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
	xsmcSetInteger(xsResult, next ? (xsIntegerValue)next->size : 0);
}

void xs_azure_ota_state(xsMachine *the)
{
	esp_ota_img_states_t state;
	const esp_partition_t *running = esp_ota_get_running_partition();
	if (running && (ESP_OK == esp_ota_get_state_partition(running, &state)) && (ESP_OTA_IMG_PENDING_VERIFY == state))
		xsmcSetString(xsResult, "pending");
	else
		xsmcSetString(xsResult, "confirmed");
}

void xs_azure_ota_confirm(xsMachine *the)
{
	esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
	if (ESP_OK != err)
		xsUnknownError("esp_ota_mark_app_valid_cancel_rollback failed: %d", err);
}

void xs_azure_ota_rollback(xsMachine *the)
{
	// Returns only when there is no previous image to go back to.
	esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();
	xsUnknownError("esp_ota_mark_app_invalid_rollback_and_reboot failed: %d", err);
}
