/*
 * The numbers Device Update puts on the wire, and this agent's reasons for refusing or failing an
 * update, in one table each. States and actions: az_iot_adu_client.h; result codes: ADUC_ResultCode
 * in iot-hub-device-update adu_core.h. The service judges a deployment by `state` and
 * `installedUpdateId` only; `lastInstallResult` is for people reading the twin.
 */

/** `agent.state` values. Only these three go on the wire. */
export const AgentState = Object.freeze({
	idle: 0,
	deploymentInProgress: 6,
	failed: 255,
} as const);
export type AgentStateValue = 0 | 6 | 255;

/** `service.workflow.action` values. */
export const WorkflowAction = Object.freeze({
	applyDeployment: 3,
	cancel: 255,
} as const);

/** `lastInstallResult.resultCode` values this agent reports (ADUC_ResultCode). */
export const ResultCode = Object.freeze({
	failure: 0,
	cancelled: -1,
	alreadyInstalled: 603,        // ADUC_Result_Install_Skipped_UpdateAlreadyInstalled
	appliedRebootRequired: 705,   // ADUC_Result_Apply_RequiredImmediateReboot
} as const);

/**
 * Why an update was refused or failed: the key names it in logs and tests, the number goes into
 * `lastInstallResult.extendedResultCode` so that the reason can be read from the twin.
 */
export const Reason = Object.freeze({
	// The request or its manifest could not be read (1xx).
	badRequest: 101,
	badManifest: 102,
	// The signature check (2xx), one code per JwsErrorCode.
	jwsFormat: 201,
	jwsAlgorithm: 202,
	jwsUnknownRootKey: 203,
	jwsRootSignature: 204,
	jwsSigningKey: 205,
	jwsManifestSignature: 206,
	jwsManifestHash: 207,
	// The device's decision (3xx).
	incompatible: 301,
	unsupportedSteps: 302,
	unsupportedHandler: 303,
	alreadyInstalled: 304,
	unsupportedFiles: 305,
	tooLarge: 306,
	noFileUrl: 307,
	refusedByApplication: 308,
	// Download and install (4xx).
	downloadFailed: 401,
	fileSizeMismatch: 402,
	fileHashMismatch: 403,
	installFailed: 404,
	rolledBack: 405,
	cancelled: 406,
} as const);
export type ReasonName = keyof typeof Reason;
