/*
 * esp_restart() for the "reboot" direct method (see restart.js).
 */
#include "xsmc.h"
#include "esp_system.h"

void xs_azure_restart(xsMachine *the)
{
	esp_restart();
}
