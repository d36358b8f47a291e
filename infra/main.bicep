// The dual-write engine in one resource group: Function App, Service Bus, Storage, Key Vault, Application
// Insights + Log Analytics, and the user-assigned identity everything is reached with. `azd up` provisions it
// from main.parameters.json; `python -m infra.plan` prints what it would create without Azure.
// App setting names are the ones core/settings.py reads and local.settings.sample.json lists;
// tests/infra checks that they agree.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds the resource names')
param environmentName string

@minLength(1)
@description('Azure region of every resource (one where Flex Consumption is offered, for FC1)')
param location string

@description('Object id of who runs azd: may read and rotate the Key Vault secrets (empty: nobody)')
param principalId string = ''

// ---- hosting ----
@allowed(['FC1', 'EP1', 'EP2', 'EP3'])
@description('FC1: Flex Consumption (scale to zero); EP1-EP3: Elastic Premium (private networking, always warm)')
param planSku string = 'FC1'
@allowed([512, 2048, 4096])
@description('Memory of each Flex Consumption instance, MB')
param instanceMemoryMB int = 2048
@minValue(40)
@maxValue(1000)
@description('Most instances the Flex Consumption plan scales a function group to')
param maximumInstanceCount int = 100
@allowed(['Standard', 'Premium'])
param serviceBusSku string = 'Standard'
@description('Service Bus Data Owner for the app (queue depth metric, target-based scaling); false: Sender + Receiver')
param serviceBusDataOwner bool = true
// Off by default. On: app/network.bicep (a virtual network, the app's outbound VNet integration, private endpoints
// and private DNS zones for Storage, Key Vault and Service Bus) and public network access off on those three. It
// takes planSku EP1-EP3 and serviceBusSku Premium; the network module refuses anything else when it deploys.
@description('Private networking: VNet integration, private endpoints, public access off (needs EP1-EP3 and Service Bus Premium)')
param privateNetworking bool = false

// ---- the two environments ----
@description('Dataverse environment URL, e.g. https://org.crm.dynamics.com')
param dataverseUrl string
@description('F&O environment URL, e.g. https://env.operations.dynamics.com')
param fnoUrl string
@allowed(['identity', 'msal'])
@description('identity: the app\'s managed identity is the D365 application user; msal: an app registration with a client secret')
param authMode string = 'identity'
@description('App registration (client) id for msal; empty with identity (the managed identity\'s client id is used)')
param clientId string = ''
@secure()
@description('App registration client secret (msal only, and then required): stored in Key Vault')
param clientSecret string = ''
@secure()
@description('Key Dataverse and F&O send to the ingest functions; azd keeps it in Key Vault (secretOrRandomPassword)')
param ingestKey string
@description('Entra object id the engine writes as (echo detection); empty with identity: the managed identity\'s')
param engineUserId string = ''

// ---- live sync and apply (defaults = core/settings.py's) ----
param deployOnStart bool = true
param sweepEnabled bool = true
param sweepIntervalSeconds int = 60
@allowed(['jobs', 'changes', 'both'])
param sweepDataverse string = 'jobs'
param sweepOverlapSeconds int = 60
param validityEnabled bool = true
param applyMaxAttempts int = 5
param applySessionBuckets int = 16
param applyRetryHorizonSeconds int = 86400
param applyAutoPauseSeconds int = 300
param applyBackoffCapSeconds int = 300
param odataBatchParts int = 100
param syncPageSize int = 1000
@allowed(['DEBUG', 'INFO', 'WARNING', 'ERROR'])
param logLevel string = 'INFO'

// ---- metrics and alerts ----
param telemetryEnabled bool = true
@description('OTLP endpoint to export traces and metrics to instead of Application Insights (empty: Application Insights)')
param otlpEndpoint string = ''
param metricsFlushSeconds int = 10
param alertWebhookUrl string = ''
@allowed(['json', 'teams', 'slack'])
param alertWebhookFormat string = 'json'
param alertSmtpHost string = ''
param alertSmtpPort int = 587
@allowed(['starttls', 'tls', 'none'])
param alertSmtpTls string = 'starttls'
param alertSmtpUser string = ''
@secure()
@description('SMTP password of alert e-mails: stored in Key Vault')
param alertSmtpPassword string = ''
param alertEmailFrom string = ''
param alertEmailTo string = ''

var tags = {
  'azd-env-name': environmentName
}
// Conditions named once (a secure parameter never appears in an app setting's expression, even inside empty()).
var useMsal = authMode == 'msal'
var useIdentity = authMode == 'identity'
var hasSmtpPassword = !empty(alertSmtpPassword)
var engineIsIdentity = useIdentity && empty(engineUserId)
var exportOtlp = !empty(otlpEndpoint)
var token = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-${token}'
var keyVaultName = 'kv-${token}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(token, 7)}'

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: group
  params: {
    name: 'id-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: group
  params: {
    logAnalyticsName: 'log-${token}'
    applicationInsightsName: 'appi-${token}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: group
  params: {
    name: 'st${token}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    deploymentContainerName: deploymentContainerName
    privateNetworking: privateNetworking
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: group
  params: {
    name: 'sb-${token}'
    location: location
    tags: tags
    sku: serviceBusSku
    appPrincipalId: identity.outputs.principalId
    grantDataOwner: serviceBusDataOwner
    privateNetworking: privateNetworking
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: group
  params: {
    name: keyVaultName
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    ingestKey: ingestKey
    clientSecret: clientSecret
    alertSmtpPassword: alertSmtpPassword
    privateNetworking: privateNetworking
  }
}

module network 'app/network.bicep' = if (privateNetworking) {
  name: 'network'
  scope: group
  params: {
    name: 'vnet-${token}'
    location: location
    tags: tags
    planSku: planSku
    serviceBusSku: serviceBusSku
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
    serviceBusNamespaceId: serviceBus.outputs.id
  }
}

// A secret is never a value here: Key Vault references, resolved by the app's identity.
var ingestKeyReference = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=ingest-key)'
var clientSecretReference = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=client-secret)'
var smtpPasswordReference = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=alert-smtp-password)'

// Every setting core/settings.py reads (same names as local.settings.sample.json). The connections are
// identity-based: `<NAME>__fullyQualifiedNamespace` / `__tableServiceUri` / `__accountName` with
// `__credential` = managedidentity and `__clientId` = the app's identity, read alike by the Functions host (the
// Service Bus triggers, AzureWebJobsStorage) and by the engine (core/settings.py).
var appSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  SERVICEBUS_CONNECTION__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  SERVICEBUS_CONNECTION__credential: 'managedidentity'
  SERVICEBUS_CONNECTION__clientId: identity.outputs.clientId
  TABLE_STORAGE_CONNECTION__tableServiceUri: storage.outputs.tableEndpoint
  TABLE_STORAGE_CONNECTION__credential: 'managedidentity'
  TABLE_STORAGE_CONNECTION__clientId: identity.outputs.clientId
  // DefaultAzureCredential's own setting: the Azure Monitor exporter and anything else without a __clientId
  // of its own use the app's identity too.
  AZURE_CLIENT_ID: identity.outputs.clientId
  CHANGES_QUEUE: 'changes'
  FNO_EVENTS_QUEUE: 'fno-events'
  SYNC_PAGES_QUEUE: 'sync-pages'
  DATAVERSE_URL: dataverseUrl
  FNO_URL: fnoUrl
  AUTH_MODE: authMode
  TENANT_ID: tenant().tenantId
  CLIENT_ID: useMsal ? clientId : identity.outputs.clientId
  CLIENT_SECRET: useMsal ? clientSecretReference : ''
  MAPS_PATH: 'maps'
  INGEST_KEY: ingestKeyReference
  DEPLOY_ON_START: string(deployOnStart)
  SWEEP_ENABLED: string(sweepEnabled)
  SWEEP_INTERVAL_SECONDS: string(sweepIntervalSeconds)
  SWEEP_DATAVERSE: sweepDataverse
  SWEEP_OVERLAP_SECONDS: string(sweepOverlapSeconds)
  VALIDITY_ENABLED: string(validityEnabled)
  APPLY_MAX_ATTEMPTS: string(applyMaxAttempts)
  APPLY_SESSION_BUCKETS: string(applySessionBuckets)
  APPLY_RETRY_HORIZON_SECONDS: string(applyRetryHorizonSeconds)
  APPLY_AUTO_PAUSE_SECONDS: string(applyAutoPauseSeconds)
  APPLY_BACKOFF_CAP_SECONDS: string(applyBackoffCapSeconds)
  ODATA_BATCH_PARTS: string(odataBatchParts)
  SYNC_PAGE_SIZE: string(syncPageSize)
  ENGINE_USER_ID: engineIsIdentity ? identity.outputs.principalId : engineUserId
  LOG_LEVEL: logLevel
  TELEMETRY_ENABLED: string(telemetryEnabled)
  METRICS_FLUSH_SECONDS: string(metricsFlushSeconds)
  ALERT_WEBHOOK_URL: alertWebhookUrl
  ALERT_WEBHOOK_FORMAT: alertWebhookFormat
  ALERT_SMTP_HOST: alertSmtpHost
  ALERT_SMTP_PORT: string(alertSmtpPort)
  ALERT_SMTP_TLS: alertSmtpTls
  ALERT_SMTP_USER: alertSmtpUser
  ALERT_SMTP_PASSWORD: hasSmtpPassword ? smtpPasswordReference : ''
  ALERT_EMAIL_FROM: alertEmailFrom
  ALERT_EMAIL_TO: alertEmailTo
  // Telemetry: host.json telemetryMode OpenTelemetry; the Python worker sets up the Azure Monitor distro before
  // it imports the app (core/ops/telemetry.py uses it as is). Application Insights takes Entra auth only: the
  // authentication string names the identity for the host and for the Azure Monitor exporter, which reads it too.
  // With otlpEndpoint set, the worker and the host export OTLP instead (PYTHON_ENABLE_OPENTELEMETRY and the
  // standard OTEL_EXPORTER_OTLP_ENDPOINT; core/ops/telemetry.py then sets up its OTLP exporters).
  APPLICATIONINSIGHTS_CONNECTION_STRING: exportOtlp ? '' : monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.outputs.clientId}'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: exportOtlp ? 'false' : 'true'
  PYTHON_ENABLE_OPENTELEMETRY: exportOtlp ? 'true' : 'false'
  OTEL_EXPORTER_OTLP_ENDPOINT: otlpEndpoint
  // The distro's httpx spans would double ours (core/connectors/http.py makes one per D365 request).
  OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: 'httpx'
  // The host forwards the app's logs already; a second copy from the distro is not wanted.
  OTEL_LOGS_EXPORTER: 'none'
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: group
  params: {
    name: functionAppName
    location: location
    tags: tags
    planSku: planSku
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    // Also makes the app wait for the private endpoints: with public access off it reaches nothing without them.
    appSubnetId: privateNetworking ? network.outputs.appSubnetId : ''
    appSettings: appSettings
    ingestKey: ingestKey
  }
}

// What the post-provision hook prints (infra/hooks/postprovision.py) and azd keeps in its environment.
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APP_URL string = 'https://${functionApp.outputs.hostName}'
output DATAVERSE_WEBHOOK_URL string = 'https://${functionApp.outputs.hostName}/api/dataverse/webhook'
output FNO_EVENTS_URL string = 'https://${functionApp.outputs.hostName}/api/fno/events'
output MANAGEMENT_API_URL string = 'https://${functionApp.outputs.hostName}/api/manage/v1'
output AUTH_MODE string = authMode
