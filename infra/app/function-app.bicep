// The Function App (Python 3.11, Linux) on Flex Consumption (FC1, the default) or Elastic Premium (EP1-EP3).
//
// Service Bus session triggers on Flex Consumption: Microsoft's Flex Consumption page lists every trigger as
// supported except Kafka, Azure SQL and SignalR, so the session-enabled batch trigger of the changes queue runs
// there; each Service Bus function scales in its own group of instances (per-function scaling), target-based
// on the queue (it needs Manage rights for that: see servicebus.bicep). Reported behaviour to plan for: with
// batching on, an instance works one session at a time and waits sessionIdleTimeout before the next
// (azure-functions-dotnet-worker#3087, azure-sdk-for-net#47981), so host.json keeps sessionIdleTimeout short and
// scale-out is bounded by the number of busy session buckets (APPLY_SESSION_BUCKETS per map).
// Flex Consumption also means: no FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION app settings (the
// runtime is in functionAppConfig), no deployment slots, and the deployment package in a blob container read
// with the app's identity.
param name string
param location string
param tags object = {}
@allowed(['FC1', 'EP1', 'EP2', 'EP3'])
param planSku string = 'FC1'
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100
param identityId string
param identityClientId string
param storageBlobEndpoint string
param deploymentContainerName string
@description('Subnet of the outbound VNet integration (network.bicep, private networking); empty: none')
param appSubnetId string = ''
@description('App settings shared by both plans (main.bicep)')
param appSettings object
@secure()
@description('The ingest key: set as the host key `ingest` that Dataverse and F&O send as x-functions-key')
param ingestKey string

var isFlex = planSku == 'FC1'
var integrated = !empty(appSubnetId)
// azd deploys the `engine` service of azure.yaml to the app carrying this tag.
var serviceTag = {
  'azd-service-name': 'engine'
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: {
    name: planSku
    tier: isFlex ? 'FlexConsumption' : 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : 20
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: name
  location: location
  tags: union(tags, serviceTag)
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    // Private networking: outbound traffic leaves through the integration subnet. Route all of it there
    // (vnetRouteAllEnabled, this API version's name for outbound routing of application traffic): Microsoft's Key
    // Vault references page asks it of Linux apps whose vault is behind a private endpoint, and the private
    // endpoints' addresses are in the VNet. Internet-bound calls (Dataverse, F&O, alert webhooks) then leave through
    // the VNet too: the subnet needs outbound internet (default outbound access, or a NAT gateway you add).
    // Runtime scale monitoring ("virtual network trigger support" of the Premium plan): the scale controller cannot
    // see a namespace behind a private endpoint, so the host reports the Service Bus queues' load itself;
    // without it the Service Bus triggers do not scale out.
    virtualNetworkSubnetId: integrated ? appSubnetId : null
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      linuxFxVersion: isFlex ? null : 'Python|3.11'
      vnetRouteAllEnabled: integrated ? true : null
      functionsRuntimeScaleMonitoringEnabled: integrated ? true : null
    }
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    } : null
  }
}

// Where Dataverse and F&O reach the app: the host name Azure gave it.
var hostSettings = {
  APP_URL: 'https://${site.properties.defaultHostName}'
}

// Elastic Premium has no functionAppConfig: the runtime is named in app settings, and the package azd or
// `func azure functionapp publish` uploads is built remotely (pip install of requirements.txt, Oryx on Linux).
// No Azure Files content share (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING): it takes a storage key, which this
// deployment has none of; Microsoft recommends one for Premium scaling, so add it if you accept a key.
var premiumSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
}

resource settings 'Microsoft.Web/sites/config@2023-12-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, hostSettings, isFlex ? {} : premiumSettings)
}

// The ingest key as a host key named `ingest`: the value the deploy step registers in Dataverse (WebhookKey) and
// F&O (x-functions-key header). Admin routes need the master key, which this key is not.
resource ingestHostKey 'Microsoft.Web/sites/host/functionKeys@2023-12-01' = {
  name: '${site.name}/default/ingest'
  properties: {
    name: 'ingest'
    value: ingestKey
  }
  dependsOn: [
    settings
  ]
}

output name string = site.name
output hostName string = site.properties.defaultHostName
output identityClientId string = identityClientId
