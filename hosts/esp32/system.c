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
